// The wallet app: a router over /app/… paths, a header, and one function per page.

import { ApiError, logout, signedIn } from "./api";
import { h } from "./dom";
import { link, navigate, onNavigate, takeFlash } from "./router";
import * as account from "./pages/account";
import * as auth from "./pages/auth";
import * as wallets from "./pages/wallets";

import type { Params } from "./router";

type Page = (main: HTMLElement, params: Params) => Promise<void> | void;

interface Route {
  pattern: RegExp;
  page: Page;
  title: string;
  signedIn: boolean;
}

const routes: Route[] = [
  { pattern: /^\/app\/sign-up$/, page: auth.signUp, title: "Create your account", signedIn: false },
  { pattern: /^\/app\/sign-in$/, page: auth.signIn, title: "Sign in", signedIn: false },
  { pattern: /^\/app\/verify-email$/, page: auth.verifyEmail, title: "Verify your e-mail", signedIn: false },
  { pattern: /^\/app\/(wallets)?$/, page: wallets.list, title: "Wallets", signedIn: true },
  { pattern: /^\/app\/wallets\/(?<id>[^/]+)$/, page: wallets.one, title: "Wallet", signedIn: true },
  { pattern: /^\/app\/send$/, page: wallets.sendMoney, title: "Send money", signedIn: true },
  { pattern: /^\/app\/hold$/, page: wallets.placeHold, title: "Place a hold", signedIn: true },
  { pattern: /^\/app\/sessions$/, page: account.sessions, title: "Sessions", signedIn: true },
  { pattern: /^\/app\/profile$/, page: account.profile, title: "Profile", signedIn: true },
];

function header(): HTMLElement {
  const nav = signedIn()
    ? h(
        "nav",
        { "aria-label": "Main" },
        link("/app/wallets", "Wallets"),
        link("/app/send", "Send"),
        link("/app/sessions", "Sessions"),
        link("/app/profile", "Profile"),
        h("button", { type: "button", class: "link", onclick: () => void signOut() }, "Sign out"),
      )
    : h("nav", { "aria-label": "Main" }, link("/app/sign-in", "Sign in"), link("/app/sign-up", "Create account"));
  return h("header", {}, h("a", { href: "/app/", class: "brand" }, "wasmpay"), nav);
}

async function signOut(): Promise<void> {
  try {
    await logout();
  } finally {
    navigate("/app/sign-in", h("p", { class: "notice info", role: "status" }, "You are signed out."));
  }
}

async function render(): Promise<void> {
  const path = location.pathname;
  const route = routes.find((r) => r.pattern.test(path));
  const main = h("main", { id: "main" });
  document.body.replaceChildren(header(), main);
  const flash = takeFlash();
  if (flash !== null) main.append(flash);
  if (route === undefined) {
    document.title = "Not found · wasmpay";
    main.append(h("h1", {}, "Page not found"), link("/app/wallets", "Go to your wallets"));
    return;
  }
  if (route.signedIn && !signedIn()) {
    navigate(`/app/sign-in?next=${encodeURIComponent(path)}`);
    return;
  }
  document.title = `${route.title} · wasmpay`;
  const params = (route.pattern.exec(path)?.groups ?? {}) as Params;
  try {
    await route.page(main, params);
  } catch (error) {
    if (error instanceof ApiError && error.problem.status === 401) {
      navigate(`/app/sign-in?next=${encodeURIComponent(path)}`);
      return;
    }
    const detail = error instanceof ApiError ? error.problem.detail : "Something went wrong.";
    main.append(h("p", { class: "notice warning", role: "alert" }, `This page could not be loaded: ${detail}`));
    console.error(error);
  }
}

onNavigate(render);
window.addEventListener("popstate", () => void render());
void render();
