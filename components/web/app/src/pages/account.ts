// Sessions (list, revoke, log out everywhere) and the profile (name, password, verification).

import { logout, send, type Session, type User } from "../api";
import { field, h, notice, onSubmit, value, when } from "../dom";
import { navigate } from "../router";
import { resendButton } from "./auth";

export async function sessions(main: HTMLElement): Promise<void> {
  const list = (await send<{ sessions: Session[] }>("GET", "/auth/sessions")).body.sessions;
  main.append(h("h1", {}, "Sessions"), h("p", { class: "muted" }, "Where you are signed in. Revoke any you do not recognise."));
  const items = h("ul", { class: "sessions", "aria-label": "Your sessions" });
  for (const session of list) {
    const item = h(
      "li",
      { class: "session" },
      h("strong", {}, session.userAgent ?? "Unknown device"),
      session.current ? h("span", { class: "badge" }, "this device") : null,
      h("span", { class: "muted" }, `Signed in ${when(session.createdAt)} · last used ${when(session.lastUsedAt)}`),
    );
    if (!session.current) {
      const revoke = h("form", { class: "inline" }, h("button", { type: "submit", class: "secondary small" }, "Revoke")) as HTMLFormElement;
      onSubmit(revoke, async () => {
        await send("DELETE", `/auth/sessions/${session.id}`);
        item.remove();
      });
      item.append(revoke);
    }
    items.append(item);
  }
  const everywhere = h("form", { class: "inline" }, h("button", { type: "submit" }, "Log out everywhere")) as HTMLFormElement;
  onSubmit(everywhere, async () => {
    for (const session of list.filter((s) => !s.current)) {
      await send("DELETE", `/auth/sessions/${session.id}`);
    }
    await logout();
    navigate("/app/sign-in", notice("You are signed out on every device.", "success"));
  });
  main.append(items, everywhere);
}

export async function profile(main: HTMLElement): Promise<void> {
  const me = (await send<User>("GET", "/users/me")).body;
  main.append(
    h("h1", {}, "Profile"),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "E-mail"),
      h("dd", {}, me.email, " ", h("span", { class: `badge ${me.emailVerified ? "ok" : "warn"}` }, me.emailVerified ? "verified" : "not verified")),
      h("dt", {}, "Member since"),
      h("dd", {}, when(me.createdAt)),
    ),
  );
  if (!me.emailVerified) main.append(resendButton());

  const name = h(
    "form",
    { novalidate: true, class: "card" },
    h("h2", {}, "Name"),
    field("Full name", "fullName", { value: me.fullName, autocomplete: "name", maxlength: "100", required: true }),
    h("button", { type: "submit" }, "Save name"),
  ) as HTMLFormElement;
  onSubmit(name, async () => {
    const updated = await send<User>("PATCH", "/users/me", { body: { fullName: value(name, "fullName") } });
    navigate("/app/profile", notice(`Your name is now ${updated.body.fullName}.`, "success"));
  });

  const password = h(
    "form",
    { novalidate: true, class: "card" },
    h("h2", {}, "Password"),
    field("Current password", "currentPassword", { type: "password", autocomplete: "current-password", required: true }),
    field("New password", "newPassword", { type: "password", autocomplete: "new-password", required: true, minlength: "8" }),
    h("button", { type: "submit" }, "Change password"),
  ) as HTMLFormElement;
  onSubmit(password, async () => {
    const input = (field: string): string => (password.elements.namedItem(field) as HTMLInputElement).value;
    await send("POST", "/users/me/password", { body: { currentPassword: input("currentPassword"), newPassword: input("newPassword") } });
    password.reset();
    navigate("/app/profile", notice("Your password is changed; your other sessions were signed out.", "success"));
  });
  main.append(name, password);
}
