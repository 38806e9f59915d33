// Signing up, verifying the e-mail address, signing in.

import { ApiError, login, send, signedIn, type User } from "../api";
import { field, h, notice, onSubmit, value } from "../dom";
import { link, navigate, type Params } from "../router";

export function signUp(main: HTMLElement): void {
  const form = h(
    "form",
    { novalidate: true },
    field("Full name", "fullName", { autocomplete: "name", required: true, maxlength: "100" }),
    field("E-mail", "email", { type: "email", autocomplete: "email", required: true }),
    field("Password", "password", { type: "password", autocomplete: "new-password", required: true, minlength: "8" }),
    field("Repeat the password", "confirmPassword", { type: "password", autocomplete: "new-password", required: true }),
    h("button", { type: "submit" }, "Create account"),
  ) as HTMLFormElement;
  onSubmit(form, async () => {
    const email = value(form, "email");
    const password = (form.elements.namedItem("password") as HTMLInputElement).value;
    await send("POST", "/auth/register", {
      auth: false,
      body: {
        fullName: value(form, "fullName"),
        email,
        password,
        confirmPassword: (form.elements.namedItem("confirmPassword") as HTMLInputElement).value,
      },
    });
    await login(email, password);
    navigate("/app/wallets", notice(`Welcome! We sent a link to ${email}: follow it to verify your address.`, "success"));
  });
  main.append(
    h("h1", {}, "Create your account"),
    form,
    h("p", {}, "Have an account already? ", link("/app/sign-in", "Sign in")),
  );
}

export function signIn(main: HTMLElement): void {
  const next = new URLSearchParams(location.search).get("next");
  const form = h(
    "form",
    { novalidate: true },
    field("E-mail", "email", { type: "email", autocomplete: "username", required: true }),
    field("Password", "password", { type: "password", autocomplete: "current-password", required: true }),
    h("button", { type: "submit" }, "Sign in"),
  ) as HTMLFormElement;
  onSubmit(form, async () => {
    await login(value(form, "email"), (form.elements.namedItem("password") as HTMLInputElement).value);
    // Only a path of this app, never another site.
    navigate(next !== null && next.startsWith("/app/") ? next : "/app/wallets");
  });
  main.append(h("h1", {}, "Sign in"), form, h("p", {}, "New here? ", link("/app/sign-up", "Create an account")));
}

const VERIFY_OUTCOMES: Record<string, string> = {
  "verification-token-expired": "This link has expired.",
  "verification-token-used": "This link was used already.",
  "verification-token-superseded": "A newer link was sent since: use the one in the latest e-mail.",
  "verification-token-invalid": "This link is not valid.",
  "validation-failed": "This link is not valid.",
};

/** The target of the verification e-mail's link. */
export async function verifyEmail(main: HTMLElement, _params: Params): Promise<void> {
  // The token leaves the address bar (and the tab's history) before anything else happens.
  const token = new URLSearchParams(location.search).get("token");
  history.replaceState(null, "", "/app/verify-email");
  main.append(h("h1", {}, "Verify your e-mail"));
  if (token === null || token === "") {
    main.append(notice("This link is incomplete: open the link from the e-mail again.", "warning"), resend());
    return;
  }
  try {
    const reply = await send<{ user: User }>("POST", "/auth/verify-email", { auth: false, body: { token } });
    main.append(
      notice(`Your e-mail address ${reply.body.user.email} is verified.`, "success"),
      signedIn() ? link("/app/wallets", "Go to your wallets", { class: "button" }) : link("/app/sign-in", "Sign in", { class: "button" }),
    );
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    main.append(notice(VERIFY_OUTCOMES[error.slug] ?? error.problem.detail, "warning"), resend());
  }
}

/** Asking for a new verification e-mail (only a signed-in user can: it cannot probe addresses). */
function resend(): HTMLElement {
  if (!signedIn()) {
    return h("p", {}, link("/app/sign-in?next=/app/profile", "Sign in"), " to ask for a new verification e-mail.");
  }
  return resendButton();
}

export function resendButton(): HTMLElement {
  const form = h("form", { class: "inline" }, h("button", { type: "submit" }, "Send a new verification e-mail")) as HTMLFormElement;
  onSubmit(form, async () => {
    await send("POST", "/auth/resend-verification");
    form.replaceWith(notice("A new verification e-mail is on its way.", "success"));
  });
  return form;
}
