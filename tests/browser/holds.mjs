// Holds in the wallet app, in a real browser: Alice (the payer) reserves money for Bob (the
// payee) and sees it leave what her wallet can spend; Bob, in his own session on a 360 px
// phone, captures part of it, and Alice sees the transfer and the hold gone. Then Alice
// cancels a hold (and Bob, on a page that still lists it, is told it is over), and Bob
// releases one; the API reference lists the holds operations. Every step asserts what the
// page shows and leaves a screenshot in $ARTIFACTS (harness.mjs). tests/e2e/browser.rs
// starts the components, creates both users with verified e-mail addresses, and checks
// the books afterwards.
//
// Environment: as harness.mjs, plus PASSWORD, ALICE_EMAIL, ALICE_NAME, BOB_EMAIL, BOB_NAME.

import {
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
  signIn,
  user,
} from "./harness.mjs";

const { PASSWORD, ALICE_EMAIL, ALICE_NAME, BOB_EMAIL, BOB_NAME } = process.env;

let step = "starting";

const available = (page) => page.getByTestId("available");
const held = (page) => page.getByTestId("held");
const holdsSection = (page) => page.getByRole("region", { name: "Holds" });
const reserved = (page) => page.getByRole("list", { name: "Reserved from this wallet" }).getByRole("listitem");
const inFavour = (page) => page.getByRole("list", { name: "Reserved for you" }).getByRole("listitem");
const success = (page) => page.locator(".notice.success");
const escaped = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** What the open wallet page says it holds. */
async function amounts({ page }, { total, spendable, onHold }, what) {
  await see(balance(page), `${total} USD`, `${what}: balance`);
  await see(available(page), `${spendable} USD`, `${what}: available`);
  await see(held(page), `${onHold} USD`, `${what}: on hold`);
}

/** From the open wallet page, places a hold; `expiry` is a label of the expiry choices. */
async function placeHold({ page }, to, amount, description, expiry) {
  await page.getByRole("link", { name: "Place a hold" }).click();
  await see(heading(page), "Place a hold", "the hold page");
  await page.getByLabel("To (e-mail address or wallet id)").fill(to);
  await page.getByLabel("Amount").fill(amount);
  await page.getByLabel("Description (optional)").fill(description);
  if (expiry) await page.getByLabel("Expires after").selectOption({ label: expiry });
  await page.getByRole("button", { name: "Place hold" }).click();
  await see(success(page), `Holding ${amount} USD for ${to} until`, `placing a hold of ${amount}`);
  await see(heading(page), "USD wallet", `back on the wallet after placing a hold of ${amount}`);
}

run(async (browser) => {
  const alice = await user(browser, "alice");
  const bob = await user(browser, "bob", 360);

  step = "both sign in and open USD wallets";
  await signIn(alice, ALICE_EMAIL, PASSWORD);
  const aliceWallet = await openWallet(alice, "USD");
  await deposit(alice, "100.00");
  await amounts(alice, { total: "100.00", spendable: "100.00", onHold: "0.00" }, step);
  await count(holdsSection(alice.page), 0, "no holds, no holds section");
  await signIn(bob, BOB_EMAIL, PASSWORD);
  const bobWallet = await openWallet(bob, "USD");

  step = "alice holds 60.00 USD for bob for a day";
  await placeHold(alice, BOB_EMAIL, "60.00", "Bike deposit", "1 day");
  await amounts(alice, { total: "100.00", spendable: "40.00", onHold: "60.00" }, step);
  await count(reserved(alice.page), 1, step);
  await see(reserved(alice.page), new RegExp(`Bike depositFor ${escaped(BOB_NAME)}.*60\\.00 USD.*expires`), step);
  await count(inFavour(alice.page), 0, "nothing on alice's wallet is in her favour");
  await see(rows(alice.page).first(), new RegExp(`Hold placed · ${escaped(BOB_NAME)}on holdBike deposit.*-60\\.00 USD`), step);
  await shot(alice.page, "hold-placed");
  await alice.page.getByRole("link", { name: "Wallets", exact: true }).click();
  await see(alice.page.locator("ul.wallets li"), /100\.00 USD60\.00 USD on hold/, "the wallet list shows what is on hold");
  await alice.page.goto(aliceWallet);

  step = "held money cannot be sent";
  await sendMoney(alice, BOB_EMAIL, "50.00");
  await see(alice.page.locator("#field-amount-error"), "available balance (its balance less its active holds)", step);
  await shot(alice.page, "hold-blocks-a-transfer");
  await alice.page.goto(aliceWallet);
  await amounts(alice, { total: "100.00", spendable: "40.00", onHold: "60.00" }, "the refused transfer changed nothing");

  step = "bob sees the hold in his favour";
  await bob.page.goto(bobWallet);
  await amounts(bob, { total: "0.00", spendable: "0.00", onHold: "0.00" }, "a hold in bob's favour is not his money yet");
  await count(inFavour(bob.page), 1, step);
  await count(reserved(bob.page), 0, "nothing of bob's is reserved");
  const bike = inFavour(bob.page).filter({ hasText: "Bike deposit" });
  await see(bike, new RegExp(`Bike depositFrom ${escaped(ALICE_NAME)}.*60\\.00 USD`), step);
  await see(rows(bob.page).first(), new RegExp(`Hold for you · ${escaped(ALICE_NAME)}on holdBike deposit.*60\\.00 USD`), step);
  await fitsWidth(bob.page, "bob's wallet with a hold, at 360 px");
  await shot(bob.page, "hold-in-favour");

  step = "bob asks to capture more than the hold";
  await bike.getByRole("button", { name: "Capture" }).click();
  await bike.getByLabel("Amount to capture (empty: all of it)").fill("60.01");
  await bike.getByRole("button", { name: "Capture" }).click();
  await see(bike.locator(".field-error"), "A capture takes more than zero and at most the amount held.", step);
  await fitsWidth(bob.page, "the capture form, at 360 px");
  await shot(bob.page, "capture-exceeds-hold");

  step = "bob captures 45.00 USD of it";
  await bike.getByLabel("Amount to capture (empty: all of it)").fill("45.00");
  await bike.getByRole("button", { name: "Capture" }).click();
  await see(success(bob.page), "Captured 45.00 USD. 15.00 USD went back to the payer.", step);
  await amounts(bob, { total: "45.00", spendable: "45.00", onHold: "0.00" }, step);
  await count(holdsSection(bob.page), 0, "a captured hold is no longer listed");
  await see(rows(bob.page).first(), new RegExp(`Received · ${escaped(ALICE_NAME)}Bike deposit.*45\\.00 USD`), step);
  await see(rows(bob.page).nth(1), /Hold for you.*capturedBike deposit/, step);
  await shot(bob.page, "captured");

  step = "alice sees the capture";
  await alice.page.goto(aliceWallet);
  await amounts(alice, { total: "55.00", spendable: "55.00", onHold: "0.00" }, step);
  await count(holdsSection(alice.page), 0, "alice's captured hold is gone");
  await see(rows(alice.page).first(), new RegExp(`Sent · ${escaped(BOB_NAME)}Bike deposit.*-45\\.00 USD`), step);
  await see(rows(alice.page).nth(1), /Hold placed.*capturedBike deposit.*-60\.00 USD/, step);
  await shot(alice.page, "capture-seen-by-the-payer");

  step = "alice cancels a hold bob still sees";
  await placeHold(alice, BOB_EMAIL, "20.00", "Concert tickets");
  await amounts(alice, { total: "55.00", spendable: "35.00", onHold: "20.00" }, step);
  await bob.page.goto(bobWallet);
  const concert = inFavour(bob.page).filter({ hasText: "Concert tickets" });
  await count(concert, 1, "bob sees the concert hold");
  await reserved(alice.page).filter({ hasText: "Concert tickets" }).getByRole("button", { name: "Cancel hold" }).click();
  await see(success(alice.page), "Cancelled the hold of 20.00 USD.", step);
  await amounts(alice, { total: "55.00", spendable: "55.00", onHold: "0.00" }, step);
  await count(holdsSection(alice.page), 0, "the cancelled hold is gone");
  await see(rows(alice.page).first(), /Hold placed.*releasedConcert tickets.*-20\.00 USD/, step);
  await shot(alice.page, "hold-cancelled");

  step = "bob, on a page still listing the cancelled hold, captures it";
  await concert.getByRole("button", { name: "Capture" }).click();
  await concert.getByRole("button", { name: "Capture" }).click();
  await see(concert.locator(".form-error"), "The hold was already captured or voided.", step);
  await shot(bob.page, "hold-not-active");
  await bob.page.reload();
  await count(holdsSection(bob.page), 0, "bob's page no longer lists it");
  await see(rows(bob.page).first(), /Hold for you.*releasedConcert tickets/, step);
  await amounts(bob, { total: "45.00", spendable: "45.00", onHold: "0.00" }, "the refused capture moved nothing");

  step = "bob releases a hold";
  await placeHold(alice, BOB_EMAIL, "5.00", "Spare key", "1 hour");
  await bob.page.reload();
  await inFavour(bob.page).filter({ hasText: "Spare key" }).getByRole("button", { name: "Release" }).click();
  await see(success(bob.page), "Released the hold of 5.00 USD.", step);
  await count(holdsSection(bob.page), 0, step);
  await alice.page.reload();
  await amounts(alice, { total: "55.00", spendable: "55.00", onHold: "0.00" }, "alice's money is free again");
  await see(rows(alice.page).first(), /Hold placed.*releasedSpare key.*-5\.00 USD/, step);
  await shot(alice.page, "history-with-holds");

  step = "the API reference documents holds";
  const reader = await user(browser, "docs");
  await reader.page.goto(`${BASE}/docs/`);
  for (const path of ["/holds", "/holds/{id}", "/holds/{id}/capture", "/holds/{id}/void"]) {
    await count(reader.page.locator(`.opblock-summary [data-path="${path}"]`), 1, `${path} in the docs`);
  }
}, () => step);
