// Building pages without innerHTML: text is always set as text, so nothing a user or the
// API supplies is ever parsed as markup.

import { ApiError, idempotencyKey } from "./api";

type Child = Node | string | null | undefined | false;
type Attributes = Record<string, string | boolean | undefined | ((event: Event) => void)>;

export function h(tag: string, attributes: Attributes = {}, ...children: Child[]): HTMLElement {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (typeof value === "function") element.addEventListener(name.replace(/^on/, ""), value);
    else if (value === true) element.setAttribute(name, "");
    else if (typeof value === "string") element.setAttribute(name, value);
  }
  append(element, ...children);
  return element;
}

export function append(parent: HTMLElement, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
}

/** A labelled input; its name is the API's field name, so a problem's `errors` find it.
 * `scope` keeps ids unique when two forms on a page share a field name. */
export function field(label: string, name: string, attributes: Attributes = {}, scope = "field"): HTMLElement {
  return labelled(label, name, h("input", { name, ...attributes }), scope);
}

/** A label, a control and the slot for its error, tied together for assistive technology. */
export function labelled(label: string, name: string, control: HTMLElement, scope = "field"): HTMLElement {
  const id = `${scope}-${name}`;
  control.id = id;
  control.setAttribute("aria-describedby", `${id}-error`);
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    control,
    h("p", { class: "field-error", id: `${id}-error`, role: "alert", hidden: true }),
  );
}

export function value(form: HTMLFormElement, name: string): string {
  const element = form.elements.namedItem(name) as HTMLInputElement | HTMLSelectElement | null;
  return element?.value.trim() ?? "";
}

/** Problem slugs that concern one field although the problem names none. */
const FIELD_OF_SLUG: Record<string, string> = {
  "unauthorized": "password",
  "too-many-login-attempts": "password",
  "email-taken": "email",
  "current-password-incorrect": "currentPassword",
  "insufficient-funds": "amount",
  "amount-above-limit": "amount",
  "amount-too-precise": "amount",
  "refund-exceeds-transfer": "amount",
  "capture-exceeds-hold": "amount",
  "recipient-not-found": "to",
  "same-account": "to",
  "currency-mismatch": "to",
  "account-exists": "currency",
  "currency-not-supported": "currency",
};

/** Field names the API uses that the form shows under another input. */
const FIELD_ALIASES: Record<string, string> = { toEmail: "to", toAccountId: "to" };

export function clearErrors(form: HTMLElement): void {
  for (const error of form.querySelectorAll<HTMLElement>(".field-error, .form-error")) {
    error.textContent = "";
    error.hidden = true;
  }
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

/** Shows a refusal next to the field it concerns, or above the form's button. */
export function showError(form: HTMLElement, error: unknown): void {
  clearErrors(form);
  if (!(error instanceof ApiError)) {
    formError(form, "Something went wrong. Please try again.");
    console.error(error);
    return;
  }
  const fieldErrors = error.problem.errors ?? [];
  let shown = false;
  for (const { field: name, message } of fieldErrors) {
    shown = fieldError(form, FIELD_ALIASES[name] ?? name, message) || shown;
  }
  if (!shown) {
    const retry = error.problem.retryAfter ? ` Try again in ${error.problem.retryAfter} s.` : "";
    const message = `${error.problem.detail.replace(/^./, (c) => c.toUpperCase())}.${retry}`.replace(/\.\.$/, ".");
    const name = FIELD_OF_SLUG[error.slug];
    if (name === undefined || !fieldError(form, name, message)) formError(form, message);
  }
}

function fieldError(form: HTMLElement, name: string, message: string): boolean {
  const input = form.querySelector<HTMLElement>(`[name="${name}"]`);
  const slot = input?.closest(".field")?.querySelector<HTMLElement>(".field-error") ?? null;
  if (input === null || slot === null) return false;
  input.setAttribute("aria-invalid", "true");
  slot.textContent = message;
  slot.hidden = false;
  return true;
}

function formError(form: HTMLElement, message: string): void {
  let slot = form.querySelector<HTMLElement>(".form-error");
  if (slot === null) {
    slot = h("p", { class: "form-error", role: "alert" });
    form.prepend(slot);
  }
  slot.textContent = message;
  slot.hidden = false;
}

/** Runs `action` for a submitted form, with its button disabled until it settles: a double
 * click submits once. */
export function onSubmit(form: HTMLFormElement, action: () => Promise<void>): void {
  let busy = false;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (busy) return;
    busy = true;
    const buttons = [...form.querySelectorAll("button")];
    for (const button of buttons) button.disabled = true;
    clearErrors(form);
    try {
      await action();
    } catch (error) {
      showError(form, error);
    } finally {
      busy = false;
      for (const button of buttons) button.disabled = false;
    }
  });
}

/** A form posting money with an Idempotency-Key per intended posting: kept while the user
 * retries the same request, replaced when any input changes or the posting succeeds. */
export function postingForm(children: HTMLElement[], post: (form: HTMLFormElement, key: string) => Promise<void>): HTMLFormElement {
  const form = h("form", { novalidate: true }, ...children) as HTMLFormElement;
  let key = idempotencyKey();
  form.addEventListener("input", () => {
    key = idempotencyKey();
  });
  onSubmit(form, async () => {
    await post(form, key);
    key = idempotencyKey();
  });
  return form;
}

export function money(amount: string, currency: string): string {
  return `${amount} ${currency}`;
}

/** Whether an amount as the API writes it ("0.00", "0", "-0.000") is zero. */
export function isZero(amount: string): boolean {
  return /^-?0(\.0+)?$/.test(amount);
}

export function when(timestamp: string): string {
  return new Date(timestamp).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function notice(text: string, kind: "success" | "info" | "warning" = "info"): HTMLElement {
  return h("p", { class: `notice ${kind}`, role: "status" }, text);
}
