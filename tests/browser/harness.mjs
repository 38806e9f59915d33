// What every browser walk shares: Debian's Chromium launched headless, one browser context
// per user, waits that fail with what the page showed instead, numbered screenshots in
// $ARTIFACTS, and the steps every walk takes in a wallet. A walk is run by tests/e2e/browser.rs.
//
// Environment: BASE_URL, ARTIFACTS, CHROMIUM (the browser binary).

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const BASE = process.env.BASE_URL;
export const ARTIFACTS = process.env.ARTIFACTS;
export const WAIT_MS = 20_000;
mkdirSync(ARTIFACTS, { recursive: true });

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
let shots = 0;
const problems = [];
const pages = [];

export function log(message) {
  process.stdout.write(`${message}\n`);
}

/** Waits until the locator's text matches, failing with what was seen instead. */
export async function see(locator, expected, what) {
  const deadline = Date.now() + WAIT_MS;
  let seen = null;
  while (Date.now() < deadline) {
    seen = await locator.first().textContent({ timeout: 500 }).catch(() => null);
    if (seen !== null && (expected instanceof RegExp ? expected.test(seen) : seen.includes(expected))) return seen;
    await sleep(100);
  }
  throw new Error(`${what}: expected ${expected}, the page shows ${JSON.stringify(seen)}`);
}

export async function count(locator, expected, what) {
  const deadline = Date.now() + WAIT_MS;
  let seen = -1;
  while (Date.now() < deadline) {
    seen = await locator.count();
    if (seen === expected) return;
    await sleep(100);
  }
  throw new Error(`${what}: expected ${expected}, the page shows ${seen}`);
}

export async function shot(page, name) {
  shots += 1;
  await page.screenshot({ path: join(ARTIFACTS, `${String(shots).padStart(2, "0")}-${name}.png`), fullPage: true });
}

/** Fails unless the page fits its viewport's width (no sideways scrolling). */
export async function fitsWidth(page, what) {
  const { scrollWidth, viewport } = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    viewport: window.innerWidth,
  }));
  if (scrollWidth > viewport) throw new Error(`${what}: the page is ${scrollWidth} px wide on a ${viewport} px screen`);
}

/** A user in their own browser context (own tab storage, own session). */
export async function user(browser, name, width = 1280) {
  const context = await browser.newContext({ viewport: { width, height: 860 }, locale: "en-US", timezoneId: "UTC" });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  pages.push(page);
  page.on("console", (message) => {
    // Chromium logs every 4xx answer as an error; the refusals a walk provokes are expected.
    const refusal = /^Failed to load resource: the server responded with a status of 4\d\d/.test(message.text());
    if (message.type() === "error" && !refusal) problems.push(`${name}: console error: ${message.text()}`);
  });
  page.on("pageerror", (error) => problems.push(`${name}: page error: ${error.message}`));
  return { name, context, page };
}

export const heading = (page) => page.locator("main h1");
export const balance = (page) => page.getByTestId("balance");
export const formWith = (page, title) => page.locator("form", { has: page.getByRole("heading", { name: title, exact: true }) });
export const rows = (page) => page.locator("ol.transactions li");

export async function signIn({ page }, email, password) {
  await page.goto(`${BASE}/app/sign-in`);
  await page.getByLabel("E-mail").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await see(heading(page), "Wallets", `${email} signs in`);
}

/** Opens a wallet from the wallets page; gives its page's URL. */
export async function openWallet({ page }, currency) {
  const what = `opening a ${currency} wallet`;
  await page.getByLabel("Currency (ISO 4217 code)").fill(currency);
  await page.getByRole("button", { name: "Open wallet" }).click();
  await see(heading(page), `${currency} wallet`, what);
  await see(page.locator(".notice.success"), `Your ${currency} wallet is open.`, what);
  return page.url();
}

/** Deposits into the USD wallet whose page is open. */
export async function deposit({ page }, amount) {
  const form = formWith(page, "Deposit");
  await form.getByLabel("Amount (USD)").fill(amount);
  await form.getByRole("button", { name: "Deposit" }).click();
  await see(page.locator(".notice.success"), `Deposited ${amount} USD.`, `depositing ${amount}`);
}

export async function sendMoney({ page }, to, amount, description, { doubleClick = false } = {}) {
  await page.getByRole("link", { name: "Send", exact: true }).click();
  await see(heading(page), "Send money", "the send page");
  await page.getByLabel("To (e-mail address or wallet id)").fill(to);
  await page.getByLabel("Amount").fill(amount);
  if (description) await page.getByLabel("Description (optional)").fill(description);
  const button = page.getByRole("button", { name: "Send", exact: true });
  if (doubleClick) await button.dblclick();
  else await button.click();
}

/** Runs a walk in a fresh headless Chromium and exits 0 when it passes. On a failure it
 * screenshots every page, names the step `currentStep()` gives, and exits 1; so does a walk
 * after which the pages reported a script or console error. */
export function run(walk, currentStep) {
  const main = async () => {
    const browser = await chromium.launch({
      executablePath: process.env.CHROMIUM,
      headless: true,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    try {
      await walk(browser);
      if (problems.length > 0) throw new Error(`the browser reported:\n${problems.join("\n")}`);
      log(`browser suite passed: ${shots} screenshots in ${ARTIFACTS}`);
    } catch (error) {
      for (const [i, page] of pages.entries()) {
        await page.screenshot({ path: join(ARTIFACTS, `failed-${i}.png`), fullPage: true }).catch(() => {});
      }
      throw error;
    } finally {
      await browser.close();
    }
  };
  main().then(
    () => process.exit(0),
    (error) => {
      process.stderr.write(`FAILED at "${currentStep()}": ${error.stack ?? error}\n`);
      if (problems.length > 0) process.stderr.write(`the browser reported:\n${problems.join("\n")}\n`);
      process.exit(1);
    },
  );
}
