// Wallets, deposits and withdrawals, sending money and placing holds, history and refunds.

import { type Account, type Hold, send, type Transaction, type Transfer, type User } from "../api";
import { append, field, h, isZero, labelled, money, notice, onSubmit, postingForm, value, when } from "../dom";
import { link, navigate, type Params } from "../router";
import { HOLD_STATUS_BADGES, HOLD_STATUS_LABELS, holdsSection } from "./holds";

const COMMON_CURRENCIES = ["USD", "EUR", "GBP", "VND", "JPY", "CHF", "CAD", "AUD", "SGD", "BHD"];

export async function list(main: HTMLElement): Promise<void> {
  const [accounts, me] = await Promise.all([
    send<{ accounts: Account[] }>("GET", "/accounts/me"),
    send<User>("GET", "/users/me"),
  ]);
  main.append(h("h1", {}, "Wallets"));
  if (!me.body.emailVerified) {
    main.append(h("p", { class: "notice warning", role: "status" }, "Verify your e-mail address to send money. ", link("/app/profile", "Profile")));
  }
  const wallets = accounts.body.accounts;
  main.append(
    wallets.length === 0
      ? h("p", {}, "You have no wallet yet: open one below.")
      : h(
          "ul",
          { class: "wallets", "aria-label": "Your wallets" },
          ...wallets.map((w) =>
            h(
              "li",
              { class: `wallet ${w.status}` },
              link(`/app/wallets/${w.id}`, `${w.currency} wallet`),
              h("span", { class: "balance" }, money(w.balance, w.currency)),
              isZero(w.held) ? null : h("span", { class: "held muted" }, `${money(w.held, w.currency)} on hold`),
              w.status === "closed" ? h("span", { class: "badge" }, "closed") : null,
            ),
          ),
        ),
  );
  const codes = h("datalist", { id: "currency-codes" }, ...COMMON_CURRENCIES.map((c) => h("option", { value: c })));
  const form = h(
    "form",
    { novalidate: true, class: "card" },
    h("h2", {}, "Open a wallet"),
    field("Currency (ISO 4217 code)", "currency", { list: "currency-codes", autocomplete: "off", required: true, maxlength: "3", placeholder: "USD" }),
    codes,
    h("button", { type: "submit" }, "Open wallet"),
  ) as HTMLFormElement;
  onSubmit(form, async () => {
    const opened = await send<Account>("POST", "/accounts", { body: { currency: value(form, "currency") } });
    navigate(`/app/wallets/${opened.body.id}`, notice(`Your ${opened.body.currency} wallet is open.`, "success"));
  });
  main.append(form);
}

export async function one(main: HTMLElement, { id }: Params): Promise<void> {
  const wallet = (await send<Account>("GET", `/accounts/${encodeURIComponent(id)}`)).body;
  const here = `/app/wallets/${wallet.id}`;
  main.append(
    h("h1", {}, `${wallet.currency} wallet`),
    h("p", { class: "balance-line" }, "Balance ", h("strong", { class: "balance", "data-testid": "balance" }, money(wallet.balance, wallet.currency))),
    h(
      "p",
      { class: "available-line" },
      "Available ",
      h("strong", { "data-testid": "available" }, money(wallet.available, wallet.currency)),
      " · on hold ",
      h("strong", { "data-testid": "held" }, money(wallet.held, wallet.currency)),
    ),
    h("p", { class: "muted" }, "Wallet id ", h("code", { "data-testid": "wallet-id" }, wallet.id)),
  );
  if (wallet.status === "closed") {
    main.append(notice(`This wallet was closed${wallet.closedAt ? ` on ${when(wallet.closedAt)}` : ""}.`));
  } else {
    const settle = (kind: "deposits" | "withdrawals", label: string, done: string): HTMLElement => {
      const form = postingForm(
        [
          h("h2", {}, label),
          field(`Amount (${wallet.currency})`, "amount", { inputmode: "decimal", autocomplete: "off", required: true }, kind),
          h("button", { type: "submit" }, label),
        ],
        async (form, key) => {
          const posted = await send<Transfer>("POST", `/${kind}`, {
            idempotencyKey: key,
            body: { accountId: wallet.id, amount: value(form, "amount") },
          });
          navigate(here, notice(`${done} ${money(posted.body.amount, posted.body.currency)}.`, "success"));
        },
      );
      form.classList.add("card");
      return form;
    };
    main.append(
      h("div", { class: "columns" }, settle("deposits", "Deposit", "Deposited"), settle("withdrawals", "Withdraw", "Withdrew")),
      h(
        "p",
        { class: "actions" },
        link(`/app/send?from=${wallet.id}`, "Send money from this wallet", { class: "button" }),
        link(`/app/hold?from=${wallet.id}`, "Place a hold", { class: "button secondary" }),
      ),
    );
  }
  append(main, holdsSection(wallet, here), await history(wallet, here));
  if (wallet.status === "active") {
    const close = h("form", { class: "inline danger-zone" }, h("button", { type: "submit", class: "secondary" }, "Close this wallet")) as HTMLFormElement;
    onSubmit(close, async () => {
      await send<Account>("DELETE", `/accounts/${wallet.id}`);
      navigate("/app/wallets", notice(`Your ${wallet.currency} wallet is closed.`, "success"));
    });
    main.append(close);
  }
}

const KIND_LABELS: Record<Transaction["kind"], string> = {
  "transfer-in": "Received",
  "transfer-out": "Sent",
  "deposit": "Deposit",
  "withdrawal": "Withdrawal",
  "refund-in": "Refund received",
  "refund-out": "Refund sent",
  "hold-out": "Hold placed",
  "hold-in": "Hold for you",
};

/** The wallet's postings, newest first, a page at a time, optionally between two dates. */
async function history(wallet: Account, here: string): Promise<HTMLElement> {
  const section = h("section", { class: "history", "aria-labelledby": "history-title" }, h("h2", { id: "history-title" }, "History"));
  const filters = h(
    "form",
    { novalidate: true, class: "filters" },
    field("From", "from", { type: "date" }, "history"),
    field("To (inclusive)", "to", { type: "date" }, "history"),
    h("button", { type: "submit", class: "secondary" }, "Filter"),
  ) as HTMLFormElement;
  const rows = h("ol", { class: "transactions", "aria-label": "Transactions" });
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Load more");
  const empty = h("p", { class: "muted", hidden: true }, "No transactions.");
  section.append(filters, rows, empty, more);
  let cursor: string | null = null;
  let range: { from?: string; to?: string } = {};

  const load = async (): Promise<void> => {
    const page = await send<{ transactions: Transaction[]; nextCursor: string | null }>(
      "GET",
      `/accounts/${wallet.id}/transactions`,
      { query: { limit: "10", cursor: cursor ?? undefined, ...range } },
    );
    for (const t of page.body.transactions) rows.append(row(wallet, t, here));
    cursor = page.body.nextCursor;
    more.hidden = cursor === null;
    empty.hidden = rows.childElementCount > 0;
  };
  onSubmit(filters, async () => {
    const from = value(filters, "from");
    const to = value(filters, "to");
    // Local calendar days: from the start of "from" to the end of "to".
    const start = from === "" ? undefined : new Date(`${from}T00:00:00`).toISOString();
    let end: string | undefined;
    if (to !== "") {
      const day = new Date(`${to}T00:00:00`);
      day.setDate(day.getDate() + 1);
      end = day.toISOString();
    }
    range = { from: start, to: end };
    cursor = null;
    rows.replaceChildren();
    await load();
  });
  more.addEventListener("click", () => {
    more.setAttribute("disabled", "");
    load().finally(() => more.removeAttribute("disabled"));
  });
  await load();
  return section;
}

function row(wallet: Account, t: Transaction, here: string): HTMLElement {
  const who = t.counterparty === null ? "" : ` · ${t.counterparty.name ?? "a closed account"}`;
  const item = h(
    "li",
    { class: `transaction ${t.kind}`, "data-kind": t.kind },
    h(
      "div",
      { class: "what" },
      h("strong", {}, `${KIND_LABELS[t.kind]}${who}`),
      t.holdStatus ? h("span", { class: HOLD_STATUS_BADGES[t.holdStatus] }, HOLD_STATUS_LABELS[t.holdStatus]) : null,
      t.description ? h("span", { class: "description" }, t.description) : null,
    ),
    h("time", { datetime: t.createdAt }, when(t.createdAt)),
    // A hold moves nothing: its amount is what it reserved, shown apart from money that moved.
    h("span", { class: `amount ${t.holdStatus ? "held" : t.amount.startsWith("-") ? "out" : "in"}` }, money(t.amount, wallet.currency)),
    h("span", { class: "after muted" }, `Balance ${money(t.balanceAfter, wallet.currency)}`),
  );
  if (t.kind === "transfer-in" && t.transferId !== null && wallet.status === "active") {
    const transferId = t.transferId;
    const open = h("button", { type: "button", class: "secondary small" }, "Refund");
    open.addEventListener("click", () => {
      open.replaceWith(refundForm(wallet, t, transferId, here));
    });
    item.append(open);
  }
  return item;
}

function refundForm(wallet: Account, t: Transaction, transferId: string, here: string): HTMLFormElement {
  const form = postingForm(
    [
      field(`Amount to refund (empty: all that is left)`, "amount", { inputmode: "decimal", autocomplete: "off" }, `refund-${t.id}`),
      h("button", { type: "submit" }, "Refund"),
    ],
    async (form, key) => {
      const amount = value(form, "amount");
      const refund = await send<Transfer>("POST", `/transfers/${transferId}/refunds`, {
        idempotencyKey: key,
        body: amount === "" ? {} : { amount },
      });
      navigate(here, notice(`Refunded ${money(refund.body.amount, wallet.currency)}.`, "success"));
    },
  );
  form.classList.add("refund");
  return form;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The caller's active wallets under the page's heading; with none, the page says to open
 * one first and this gives null. */
async function payingWallets(main: HTMLElement, title: string): Promise<Account[] | null> {
  const accounts = (await send<{ accounts: Account[] }>("GET", "/accounts/me")).body.accounts.filter((a) => a.status === "active");
  main.append(h("h1", {}, title));
  if (accounts.length === 0) {
    main.append(h("p", {}, "Open a wallet first: ", link("/app/wallets", "Wallets")));
    return null;
  }
  return accounts;
}

/** What sending money and placing a hold both ask: from which wallet, to whom, how much. */
function paymentFields(accounts: Account[]): HTMLElement[] {
  const preferred = new URLSearchParams(location.search).get("from");
  const from = h(
    "select",
    { name: "fromAccountId" },
    ...accounts.map((a) => h("option", { value: a.id, selected: a.id === preferred }, `${a.currency} wallet · ${a.available} available`)),
  );
  return [
    labelled("From", "fromAccountId", from),
    field("To (e-mail address or wallet id)", "to", { autocomplete: "off", required: true }),
    field("Amount", "amount", { inputmode: "decimal", autocomplete: "off", required: true }),
    field("Description (optional)", "description", { maxlength: "200", autocomplete: "off" }),
  ];
}

/** The request body `paymentFields` describe, shared by POST /transfers and POST /holds. */
function paymentBody(form: HTMLFormElement, source: Account): Record<string, string> {
  const to = value(form, "to");
  const description = value(form, "description");
  return {
    fromAccountId: source.id,
    ...(UUID.test(to) ? { toAccountId: to } : { toEmail: to }),
    amount: value(form, "amount"),
    currency: source.currency,
    ...(description === "" ? {} : { description }),
  };
}

export async function sendMoney(main: HTMLElement): Promise<void> {
  const accounts = await payingWallets(main, "Send money");
  if (accounts === null) return;
  const form = postingForm([...paymentFields(accounts), h("button", { type: "submit" }, "Send")], async (form, key) => {
    const source = accounts.find((a) => a.id === value(form, "fromAccountId"));
    if (source === undefined) return;
    const posted = await send<Transfer>("POST", "/transfers", { idempotencyKey: key, body: paymentBody(form, source) });
    navigate(`/app/wallets/${source.id}`, notice(`Sent ${money(posted.body.amount, posted.body.currency)} to ${value(form, "to")}.`, "success"));
  });
  form.classList.add("card");
  main.append(
    form,
    h("p", { class: "muted" }, "To reserve money now and let the recipient take it later, ", link(`/app/hold${location.search}`, "place a hold"), "."),
  );
}

/** How long a hold may last, in `expiresInSecs`; empty leaves it to the platform. */
const HOLD_EXPIRY_CHOICES: [string, string][] = [
  ["", "The platform's default"],
  ["3600", "1 hour"],
  ["86400", "1 day"],
  ["259200", "3 days"],
  ["604800", "7 days"],
  ["1209600", "14 days"],
  ["2592000", "30 days"],
];

export async function placeHold(main: HTMLElement): Promise<void> {
  const accounts = await payingWallets(main, "Place a hold");
  if (accounts === null) return;
  main.append(
    h(
      "p",
      { class: "muted" },
      "The money stays in your wallet but cannot be spent until the recipient captures it (all or part), you cancel it, or it expires.",
    ),
  );
  const expiry = h("select", { name: "expiresInSecs" }, ...HOLD_EXPIRY_CHOICES.map(([secs, label]) => h("option", { value: secs }, label)));
  const form = postingForm(
    [...paymentFields(accounts), labelled("Expires after", "expiresInSecs", expiry), h("button", { type: "submit" }, "Place hold")],
    async (form, key) => {
      const source = accounts.find((a) => a.id === value(form, "fromAccountId"));
      if (source === undefined) return;
      const expiresInSecs = value(form, "expiresInSecs");
      const placed = await send<Hold>("POST", "/holds", {
        idempotencyKey: key,
        body: { ...paymentBody(form, source), ...(expiresInSecs === "" ? {} : { expiresInSecs: Number(expiresInSecs) }) },
      });
      const held = placed.body;
      navigate(
        `/app/wallets/${source.id}`,
        notice(`Holding ${money(held.amount, held.currency)} for ${value(form, "to")} until ${when(held.expiresAt)}.`, "success"),
      );
    },
  );
  form.classList.add("card");
  main.append(form);
}
