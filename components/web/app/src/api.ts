// The wasmpay API from the browser: same origin, JSON in and out, every refusal an RFC 9457
// problem.
//
// Where the tokens live, and why:
// - The access token (15 min) is kept in this module's memory only: no script that runs
//   later in another page, and no other tab, can read it from storage.
// - The refresh token is kept in sessionStorage, so that a reload of this tab keeps the
//   user signed in; it is gone when the tab closes, and other tabs never see it. Refresh
//   tokens are single-use: presenting a stolen, already used one revokes the whole session.
// - Not a cookie: the API authenticates with a bearer header and takes no cookie, so no
//   request can be forged from another site (CSRF) against it. The strict
//   Content-Security-Policy the web component sends (scripts from this origin only, no
//   inline script, no eval) is what keeps foreign script out of this page.

export interface FieldError {
  field: string;
  message: string;
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  errors?: FieldError[];
  retryAfter?: number;
}

export class ApiError extends Error {
  constructor(readonly problem: Problem) {
    super(problem.detail);
  }

  /** The stable part of the problem type: `insufficient-funds`, `validation-failed`, … */
  get slug(): string {
    return this.problem.type.split("/").pop() ?? "";
  }
}

export interface User {
  id: string;
  email: string;
  fullName: string;
  emailVerified: boolean;
  createdAt: string;
}

export interface Account {
  id: string;
  currency: string;
  balance: string;
  /** What the wallet can spend: its balance less `held`. */
  available: string;
  /** What its active holds reserve. */
  held: string;
  status: "active" | "closed";
  createdAt: string;
  closedAt?: string;
  /** `GET /accounts/{id}` only: active holds on its money and in its favour, newest first. */
  holds?: Hold[];
}

export type HoldStatus = "pending" | "captured" | "voided" | "expired";

export interface Hold {
  id: string;
  status: HoldStatus;
  /** The payer's wallet. */
  fromAccountId: string;
  /** The payee's wallet. */
  toAccountId: string;
  payerName: string | null;
  payeeName: string | null;
  amount: string;
  currency: string;
  description: string | null;
  capturedAmount: string | null;
  releasedAmount: string | null;
  transferId: string | null;
  voidedBy: "payer" | "payee" | null;
  expiresAt: string;
  createdAt: string;
  settledAt: string | null;
  /** In the answer to a capture only. */
  transfer?: Transfer;
}

export interface Transfer {
  id: string;
  kind: "transfer" | "deposit" | "withdrawal" | "refund";
  fromAccountId: string | null;
  toAccountId: string | null;
  amount: string;
  currency: string;
  description: string | null;
  refundOf: string | null;
  refundedAmount: string;
  holdId: string | null;
  createdAt: string;
}

export interface Transaction {
  /** The ledger entry, or `hold:` and the hold's id. */
  id: string;
  /** The posting; for a hold, the transfer its capture became (or null). */
  transferId: string | null;
  kind: "transfer-in" | "transfer-out" | "deposit" | "withdrawal" | "refund-in" | "refund-out" | "hold-out" | "hold-in";
  /** Signed; a hold moves nothing, so for one this is what it reserved. */
  amount: string;
  balanceAfter: string;
  counterparty: { accountId: string; name: string | null } | null;
  description: string | null;
  createdAt: string;
  /** The hold this item is, or the hold a transfer captured. */
  holdId?: string;
  /** A hold item's status now. */
  holdStatus?: HoldStatus;
}

export interface Session {
  id: string;
  userAgent: string | null;
  createdAt: string;
  lastUsedAt: string;
  current: boolean;
}

interface TokenPair {
  accessToken: string;
  refreshToken: string;
  expiresIn: number;
}

const REFRESH_KEY = "wasmpay.refreshToken";
let accessToken: string | null = null;
let refreshing: Promise<boolean> | null = null;

export function signedIn(): boolean {
  return accessToken !== null || sessionStorage.getItem(REFRESH_KEY) !== null;
}

function keep(pair: TokenPair): void {
  accessToken = pair.accessToken;
  sessionStorage.setItem(REFRESH_KEY, pair.refreshToken);
}

export function forget(): void {
  accessToken = null;
  sessionStorage.removeItem(REFRESH_KEY);
}

/** Rotates the refresh token once for everyone waiting: two requests refreshing with the
 * same single-use token would look like theft and end the session. */
function refresh(): Promise<boolean> {
  refreshing ??= (async () => {
    const refreshToken = sessionStorage.getItem(REFRESH_KEY);
    if (refreshToken === null) return false;
    try {
      const reply = await send<TokenPair>("POST", "/auth/refresh", { body: { refreshToken }, auth: false });
      keep(reply.body);
      return true;
    } catch (error) {
      if (error instanceof ApiError && error.problem.status === 401) forget();
      return false;
    }
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

interface Options {
  body?: unknown;
  auth?: boolean;
  idempotencyKey?: string;
  query?: Record<string, string | undefined>;
}

export interface Reply<T> {
  status: number;
  body: T;
  replayed: boolean;
}

/** Calls the API; a refused request throws an ApiError carrying the problem. An expired
 * access token is refreshed once and the request sent again. */
export async function send<T>(method: string, path: string, options: Options = {}): Promise<Reply<T>> {
  const auth = options.auth ?? true;
  if (auth && accessToken === null && !(await refresh())) throw signedOut();
  let reply = await attempt(method, path, options, auth);
  if (auth && reply.status === 401 && (await refresh())) {
    reply = await attempt(method, path, options, auth);
  }
  const text = await reply.text();
  const body = text === "" ? null : parse(text, reply.status);
  if (!reply.ok) {
    if (auth && reply.status === 401) forget();
    throw new ApiError(body as Problem);
  }
  return { status: reply.status, body: body as T, replayed: reply.headers.get("idempotent-replayed") === "true" };
}

async function attempt(method: string, path: string, options: Options, auth: boolean): Promise<Response> {
  const headers: Record<string, string> = { accept: "application/json, application/problem+json" };
  if (options.body !== undefined) headers["content-type"] = "application/json";
  if (auth && accessToken !== null) headers.authorization = `Bearer ${accessToken}`;
  if (options.idempotencyKey !== undefined) headers["idempotency-key"] = options.idempotencyKey;
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(options.query ?? {})) {
    if (value !== undefined && value !== "") query.set(name, value);
  }
  const url = query.size > 0 ? `${path}?${query}` : path;
  try {
    return await fetch(url, {
      method,
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      credentials: "omit",
      cache: "no-store",
    });
  } catch {
    throw new ApiError({
      type: "about:blank",
      title: "Network error",
      status: 0,
      detail: "The server could not be reached. Check your connection and try again.",
    });
  }
}

function parse(text: string, status: number): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return { type: "about:blank", title: "Unexpected response", status, detail: `The server answered ${status}.` };
  }
}

function signedOut(): ApiError {
  return new ApiError({ type: "about:blank", title: "Signed out", status: 401, detail: "Please sign in." });
}

export async function login(email: string, password: string): Promise<User> {
  const reply = await send<TokenPair & { user: User }>("POST", "/auth/login", { body: { email, password }, auth: false });
  keep(reply.body);
  return reply.body.user;
}

export async function logout(): Promise<void> {
  try {
    await send("POST", "/auth/logout");
  } finally {
    forget();
  }
}

/** A fresh key for one intended posting (kept across retries of that same posting). */
export function idempotencyKey(): string {
  return crypto.randomUUID();
}
