// The wallet app in a real browser: Debian's Chromium driven by Playwright, against the full
// stack (components under Spin or wasmpay-host, the bridge, the Novu stand-in) that
// tests/e2e/browser.rs starts. Every step asserts what the page shows and leaves a
// screenshot in $ARTIFACTS (harness.mjs).
//
// The verification e-mail is read from the Novu stand-in by the Rust side: this script
// prints `wasmpay-test: verification-link <address>` and reads the link from stdin.
//
// Environment: BASE_URL, ARTIFACTS, CHROMIUM (the browser binary).

import { join } from "node:path";
import { createInterface } from "node:readline";
import {
  ARTIFACTS,
  BASE,
  balance,
  count,
  deposit,
  fitsWidth,
  heading,
  openWallet,
  rows,
  run,
  see,
  sendMoney,
  shot,
  user,
} from "./harness.mjs";

const stdin = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function ask(question) {
  process.stdout.write(`wasmpay-test: ${question}\n`);
  const answer = await stdin.next();
  if (answer.done) throw new Error(`no answer to ${question}`);
  return answer.value.trim();
}

let step = "starting";

async function signUp({ page }, fullName, email) {
  step = `${fullName} signs up`;
  await page.goto(`${BASE}/app/sign-up`);
  await see(heading(page), "Create your account", step);
  await page.getByLabel("Full name").fill(fullName);
  await page.getByLabel("E-mail").fill(email);
  await page.getByLabel("Password", { exact: true }).fill("correct horse battery");
  await page.getByLabel("Repeat the password").fill("correct horse battery");
  await shot(page, `sign-up-${fullName.split(" ")[0].toLowerCase()}`);
  await page.getByRole("button", { name: "Create account" }).click();
  await see(heading(page), "Wallets", step);
  await see(page.locator(".notice.success"), `We sent a link to ${email}`, step);
  await see(page.locator(".notice.warning"), "Verify your e-mail address to send money", step);
}

async function verify({ page }, email, first) {
  step = `${email} follows the verification link`;
  const link = await ask(`verification-link ${email}`);
  if (!link.startsWith(`${BASE}/app/verify-email?token=`)) throw new Error(`unexpected link ${link}`);
  await page.goto(link);
  await see(page.locator(".notice"), `Your e-mail address ${email} is verified.`, step);
  if (new URL(page.url()).search !== "") throw new Error(`the token stayed in the address bar: ${page.url()}`);
  if (first) await shot(page, "verified");
  await page.getByRole("link", { name: "Go to your wallets" }).click();
  await see(heading(page), "Wallets", step);
  await count(page.locator(".notice.warning"), 0, "no verification warning once verified");
  // The link works once: opened again, it says so.
  await page.goto(link);
  await see(page.locator(".notice"), "This link was used already.", "the link opened a second time");
  await page.getByRole("link", { name: "Wallets" }).click();
  await see(heading(page), "Wallets", step);
}

run(async (browser) => {
  const suffix = `${Date.now()}${Math.floor(Math.random() * 1000)}`;
  const aliceEmail = `alice.${suffix}@example.com`;
  const bobEmail = `bob.${suffix}@example.com`;
  const alice = await user(browser, "alice");
  const bob = await user(browser, "bob");

  // Sign up, verify from the e-mail's link, open a USD wallet, deposit.
  await signUp(alice, "Alice Browser", aliceEmail);
  await shot(alice.page, "wallets-unverified");
  await verify(alice, aliceEmail, true);
  const aliceWallet = await openWallet(alice, "USD");
  await see(balance(alice.page), "0.00 USD", "a new wallet is empty");
  await see(alice.page.locator(".history"), "No transactions.", "a new wallet has no history");
  await deposit(alice, "100.00");
  await see(balance(alice.page), "100.00 USD", "the balance after the deposit");
  await see(rows(alice.page).first(), "Deposit", "the deposit in the history");
  await shot(alice.page, "wallet-after-deposit");

  // A second user.
  await signUp(bob, "Bob Browser", bobEmail);
  await verify(bob, bobEmail, false);
  const bobWallet = await openWallet(bob, "USD");

  // Alice sends money by e-mail; both histories show it.
  step = "alice sends 25.50 USD to bob by e-mail";
  await sendMoney(alice, bobEmail, "25.50", "Dinner");
  await see(alice.page.locator(".notice.success"), `Sent 25.50 USD to ${bobEmail}.`, step);
  await see(balance(alice.page), "74.50 USD", step);
  await see(rows(alice.page).first(), /Sent · Bob Browser.*Dinner.*-25\.50 USD/, step);
  await shot(alice.page, "sent");
  await bob.page.goto(bobWallet);
  await see(balance(bob.page), "25.50 USD", "bob's balance");
  await see(rows(bob.page).first(), /Received · Alice Browser.*Dinner.*25\.50 USD/, "bob's history");
  await shot(bob.page, "received");

  // Bob refunds part of it.
  step = "bob refunds 10.00 USD";
  await rows(bob.page).first().getByRole("button", { name: "Refund" }).click();
  await rows(bob.page).first().getByLabel("Amount to refund (empty: all that is left)").fill("10.00");
  await shot(bob.page, "refund-form");
  await rows(bob.page).first().getByRole("button", { name: "Refund" }).click();
  await see(bob.page.locator(".notice.success"), "Refunded 10.00 USD.", step);
  await see(balance(bob.page), "15.50 USD", step);
  await see(rows(bob.page).first(), /Refund sent · Alice Browser.*-10\.00 USD/, step);
  await alice.page.goto(aliceWallet);
  await see(balance(alice.page), "84.50 USD", "alice after the refund");
  await see(rows(alice.page).first(), /Refund received · Bob Browser.*10\.00 USD/, "alice's history");
  // The README's picture of the wallet (the window only).
  await alice.page.screenshot({ path: join(ARTIFACTS, "wallet.png") });

  // Refusals are shown next to their field and change nothing.
  step = "an insufficient-funds transfer";
  await sendMoney(alice, bobEmail, "1000.00");
  await see(
    alice.page.locator("#field-amount-error"),
    "The wallet's available balance (its balance less its active holds) is lower than the amount.",
    step,
  );
  await shot(alice.page, "insufficient-funds");
  await alice.page.goto(aliceWallet);
  await see(balance(alice.page), "84.50 USD", "the refused transfer changed nothing");
  await count(rows(alice.page), 3, "the refused transfer is not in the history");

  // A double-clicked Send pays once.
  step = "a double-clicked Send";
  await sendMoney(alice, bobEmail, "1.00", "Once", { doubleClick: true });
  await see(alice.page.locator(".notice.success"), `Sent 1.00 USD to ${bobEmail}.`, step);
  await see(balance(alice.page), "83.50 USD", step);
  await count(alice.page.locator("ol.transactions li", { hasText: "Once" }), 1, "one transfer in alice's history");
  await bob.page.goto(bobWallet);
  await see(balance(bob.page), "16.50 USD", "bob got it once");
  await count(bob.page.locator("ol.transactions li", { hasText: "Once" }), 1, "one transfer in bob's history");

  // History pages and date filters.
  step = "paging the history";
  await alice.page.goto(aliceWallet);
  for (let i = 1; i <= 8; i += 1) await deposit(alice, `${i}.00`);
  await see(balance(alice.page), "119.50 USD", step);
  await count(rows(alice.page), 10, "the first page");
  await alice.page.getByRole("button", { name: "Load more" }).click();
  await count(rows(alice.page), 12, "both pages");
  await count(alice.page.getByRole("button", { name: "Load more" }), 0, "no third page");
  step = "filtering the history by date";
  const today = new Date().toISOString().slice(0, 10);
  await alice.page.getByLabel("From").fill("2001-01-01");
  await alice.page.getByLabel("To (inclusive)").fill("2001-12-31");
  await alice.page.getByRole("button", { name: "Filter" }).click();
  await see(alice.page.locator(".history"), "No transactions.", "nothing in 2001");
  await alice.page.getByLabel("To (inclusive)").fill(today);
  await alice.page.getByRole("button", { name: "Filter" }).click();
  await count(rows(alice.page), 10, "today's first page");
  await shot(alice.page, "history");

  // A wrong password is shown next to the password field.
  step = "signing in with a wrong password";
  const second = await user(browser, "alice-second");
  await second.page.goto(`${BASE}/app/sign-in`);
  await second.page.getByLabel("E-mail").fill(aliceEmail);
  await second.page.getByLabel("Password").fill("not the password");
  await second.page.getByRole("button", { name: "Sign in" }).click();
  await see(second.page.locator("#field-password-error"), "The e-mail address or password is incorrect.", step);
  await shot(second.page, "wrong-password");
  await second.page.getByLabel("Password").fill("correct horse battery");
  await second.page.getByRole("button", { name: "Sign in" }).click();
  await see(heading(second.page), "Wallets", "signed in on a second device");

  // Profile: a wrong current password is refused next to its field.
  step = "bob's profile";
  await bob.page.getByRole("link", { name: "Profile" }).click();
  await see(heading(bob.page), "Profile", step);
  await see(bob.page.locator(".facts"), "verified", step);
  await bob.page.getByLabel("Current password").fill("wrong password");
  await bob.page.getByLabel("New password").fill("a brand new password");
  await bob.page.getByRole("button", { name: "Change password" }).click();
  await see(bob.page.locator("#field-currentPassword-error"), /current password is incorrect/i, step);
  await bob.page.getByLabel("Full name").fill("Robert Browser");
  await bob.page.getByRole("button", { name: "Save name" }).click();
  await see(bob.page.locator(".notice.success"), "Your name is now Robert Browser.", step);
  await shot(bob.page, "profile");

  // Sessions: two for alice; log out everywhere ends both.
  step = "alice's sessions";
  await alice.page.getByRole("link", { name: "Sessions" }).click();
  await see(heading(alice.page), "Sessions", step);
  await count(alice.page.locator("ul.sessions li"), 2, "two sessions");
  await count(alice.page.locator("ul.sessions li", { hasText: "this device" }), 1, "one is this device");
  await shot(alice.page, "sessions");
  await alice.page.getByRole("button", { name: "Log out everywhere" }).click();
  await see(heading(alice.page), "Sign in", step);
  await see(alice.page.locator(".notice"), "You are signed out on every device.", step);
  await second.page.reload();
  await see(heading(second.page), "Sign in", "the other device is signed out too");

  // Bob logs out.
  step = "bob signs out";
  await bob.page.getByRole("button", { name: "Sign out" }).click();
  await see(heading(bob.page), "Sign in", step);
  await see(bob.page.locator(".notice"), "You are signed out.", step);
  await bob.page.goto(bobWallet);
  await see(heading(bob.page), "Sign in", "a signed-out user is sent to sign in");

  // Every page fits a 360 px phone without sideways scrolling.
  step = "a 360 px screen";
  const phone = await user(browser, "phone", 360);
  await phone.page.goto(`${BASE}/app/sign-in`);
  await phone.page.getByLabel("E-mail").fill(bobEmail);
  await phone.page.getByLabel("Password").fill("correct horse battery");
  await phone.page.getByRole("button", { name: "Sign in" }).click();
  await see(heading(phone.page), "Wallets", step);
  for (const [path, title] of [
    ["/app/wallets", "Wallets"],
    [new URL(bobWallet).pathname, "USD wallet"],
    ["/app/send", "Send money"],
    ["/app/hold", "Place a hold"],
    ["/app/sessions", "Sessions"],
    ["/app/profile", "Profile"],
  ]) {
    await phone.page.goto(`${BASE}${path}`);
    await see(heading(phone.page), title, `${path} at 360 px`);
    await fitsWidth(phone.page, `${path} at 360 px`);
    await shot(phone.page, `phone-${title.toLowerCase().replace(/ /g, "-")}`);
  }

  // The API reference: rendered from openapi.yaml, and "try it" calls this origin.
  step = "the API reference";
  const reader = await user(browser, "docs");
  await reader.page.goto(`${BASE}/docs/`);
  await see(reader.page.locator(".information-container .title"), "wasmpay", step);
  const health = reader.page.locator(".opblock", { has: reader.page.locator('[data-path="/auth/health"]') });
  await health.locator(".opblock-summary").click();
  await health.getByRole("button", { name: "Try it out" }).click();
  await health.getByRole("button", { name: "Execute" }).click();
  await see(health.locator(".live-responses-table tbody .response-col_status"), "200", "the health call from the docs");
  await see(health.locator(".request-url"), `${BASE}/auth/health`, "the docs call the same origin");
  await shot(reader.page, "docs");
}, () => step);
