// A wallet's active holds: money it reserves for someone, which its owner may cancel, and
// money reserved in its favour, which its owner may capture (all or part) or release.
// Placing a hold is beside sending money, in wallets.ts.

import { type Account, type Hold, type HoldStatus, send } from "../api";
import { field, h, isZero, money, notice, postingForm, value, when } from "../dom";
import { navigate } from "../router";

/** A hold's status as the wallet's owner reads it; a void is a release by either party. */
export const HOLD_STATUS_LABELS: Record<HoldStatus, string> = {
  pending: "on hold",
  captured: "captured",
  voided: "released",
  expired: "expired",
};

export const HOLD_STATUS_BADGES: Record<HoldStatus, string> = {
  pending: "badge warn",
  captured: "badge ok",
  voided: "badge",
  expired: "badge",
};

/** The wallet's active holds, those on its money apart from those in its favour; nothing
 * when it has none. */
export function holdsSection(wallet: Account, here: string): HTMLElement | null {
  const holds = wallet.holds ?? [];
  if (holds.length === 0) return null;
  const reserved = holds.filter((hold) => hold.fromAccountId === wallet.id);
  const inFavour = holds.filter((hold) => hold.toAccountId === wallet.id);
  const section = h("section", { class: "holds", "aria-labelledby": "holds-title" }, h("h2", { id: "holds-title" }, "Holds"));
  if (reserved.length > 0) {
    section.append(
      h("h3", { id: "holds-reserved-title" }, "Reserved from this wallet"),
      h(
        "ul",
        { class: "holds", "aria-labelledby": "holds-reserved-title" },
        ...reserved.map((hold) => item(hold, `For ${hold.payeeName ?? "another user"}`, voidForm(hold, here, "Cancel hold", "Cancelled"))),
      ),
    );
  }
  if (inFavour.length > 0) {
    section.append(
      h("h3", { id: "holds-in-favour-title" }, "Reserved for you"),
      h(
        "ul",
        { class: "holds", "aria-labelledby": "holds-in-favour-title" },
        ...inFavour.map((hold) =>
          item(hold, `From ${hold.payerName ?? "another user"}`, captureButton(hold, here), voidForm(hold, here, "Release", "Released")),
        ),
      ),
    );
  }
  return section;
}

/** One hold: what it is for, who is on the other side, how much and until when. */
function item(hold: Hold, party: string, ...actions: HTMLElement[]): HTMLElement {
  return h(
    "li",
    { class: "hold", "data-hold-id": hold.id },
    h("strong", { class: "what" }, hold.description ?? "No description"),
    h("span", { class: "party" }, party),
    h("span", { class: "amount" }, money(hold.amount, hold.currency)),
    h(
      "span",
      { class: "muted when" },
      "Placed ",
      h("time", { datetime: hold.createdAt }, when(hold.createdAt)),
      " · expires ",
      h("time", { datetime: hold.expiresAt }, when(hold.expiresAt)),
    ),
    h("div", { class: "actions" }, ...actions),
  );
}

/** Cancel (the payer) or release (the payee): either ends the hold and frees its money. */
function voidForm(hold: Hold, here: string, label: string, done: string): HTMLFormElement {
  const form = postingForm([h("button", { type: "submit", class: "secondary small" }, label)], async (_form, key) => {
    const voided = await send<Hold>("POST", `/holds/${hold.id}/void`, { idempotencyKey: key });
    navigate(here, notice(`${done} the hold of ${money(voided.body.amount, voided.body.currency)}.`, "success"));
  });
  form.classList.add("inline");
  return form;
}

function captureButton(hold: Hold, here: string): HTMLElement {
  const open = h("button", { type: "button", class: "small" }, "Capture");
  open.addEventListener("click", () => {
    open.replaceWith(captureForm(hold, here));
  });
  return open;
}

function captureForm(hold: Hold, here: string): HTMLFormElement {
  const form = postingForm(
    [
      field("Amount to capture (empty: all of it)", "amount", { inputmode: "decimal", autocomplete: "off" }, `capture-${hold.id}`),
      h("button", { type: "submit", class: "small" }, "Capture"),
    ],
    async (form, key) => {
      const amount = value(form, "amount");
      const captured = (
        await send<Hold>("POST", `/holds/${hold.id}/capture`, {
          idempotencyKey: key,
          body: amount === "" ? {} : { amount },
        })
      ).body;
      const released = captured.releasedAmount;
      const back = released === null || isZero(released) ? "" : ` ${money(released, captured.currency)} went back to the payer.`;
      navigate(here, notice(`Captured ${money(captured.capturedAmount ?? captured.amount, captured.currency)}.${back}`, "success"));
    },
  );
  form.classList.add("capture");
  return form;
}
