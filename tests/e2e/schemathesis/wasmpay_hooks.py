"""Schemathesis hooks for wasmpay's fuzz run (tests/e2e/fuzz.rs).

openapi.yaml promises that a request its schemas accept is refused for its values only by a
rule an operation's description states. `schema_valid_requests_are_refused_only_by_documented_rules`
holds the server to that promise, in place of schemathesis's `positive_data_acceptance`, which
cannot tell a documented refusal (`insufficient-funds` 422) from a refused shape
(`validation-failed` 422). `before_call` keeps generated requests meaningful: a fresh
Idempotency-Key per request and a `confirmPassword` equal to `password`.
"""

import itertools
import json
import re

import schemathesis

PROBLEM_TYPE = re.compile(r"^https://wasmpay\.dev/problems/([a-z-]+)$")
IDEMPOTENCY_KEY = re.compile(r"[!-~]{1,255}")
KEYS = itertools.count(1)

# Refusals a schema-valid request may get: outcomes of the stored data or of the
# configuration, each listed in the operation's description.
DOCUMENTED_OUTCOMES = {
    "verification-token-invalid",
    "payload-too-large",
    "currency-not-supported",
    "insufficient-funds",
    "currency-mismatch",
    "amount-above-limit",
    "amount-too-precise",
    "same-account",
    "not-refundable",
    "refund-exceeds-transfer",
    "capture-exceeds-hold",
    "idempotency-key-reused",
}

# `validation-failed` errors a schema-valid request may get: the rules between fields, in
# bytes, or of e-mail syntax that JSON Schema cannot state and the operation's description
# does. By operation, field, and a pattern of the server's message.
EMAIL_SYNTAX = re.compile(r"must be an e-mail address such as name@example\.com")
DOCUMENTED_RULES = {
    ("POST /auth/register", "password"): re.compile(r"must be at most 72 bytes\b.*"),
    ("POST /auth/register", "email"): EMAIL_SYNTAX,
    ("POST /transfers", "toEmail"): EMAIL_SYNTAX,
    ("POST /holds", "toEmail"): EMAIL_SYNTAX,
    ("POST /users/me/password", "newPassword"): re.compile(
        r"must differ from the current password|must be at most 72 bytes\b.*"
    ),
    ("POST /transfers", "amount"): re.compile(r"[A-Z]{3} allows at most [0-9] decimal places"),
    ("POST /holds", "amount"): re.compile(r"[A-Z]{3} allows at most [0-9] decimal places"),
    ("GET /accounts/{id}/transactions", "to"): re.compile(r"must be after from"),
}

# Statuses with which the server refuses a request for its own shape or values.
REFUSALS = {400, 413, 415, 422}


@schemathesis.hook
def before_call(context, case, kwargs):
    headers = case.headers or {}
    key = headers.get("Idempotency-Key")
    # A schema-valid key is replaced by an unused one, so each request is processed rather than
    # replayed or refused as a reused key; a malformed one (negative data) is sent as generated.
    if isinstance(key, str) and IDEMPOTENCY_KEY.fullmatch(key):
        case.headers["Idempotency-Key"] = f"fuzz-{next(KEYS)}"
    # Registration needs both passwords equal; random ones never are, and no registration
    # would get past that rule.
    if (case.method.upper(), case.path) == ("POST", "/auth/register") and isinstance(case.body, dict):
        password = case.body.get("password")
        if isinstance(password, str):
            case.body["confirmPassword"] = password


def _problem(response):
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


@schemathesis.check
def schema_valid_requests_are_refused_only_by_documented_rules(ctx, response, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code not in REFUSALS:
        return None
    problem = _problem(response) or {}
    match = PROBLEM_TYPE.match(str(problem.get("type", "")))
    slug = match.group(1) if match else None
    if slug in DOCUMENTED_OUTCOMES:
        return None
    operation = f"{case.method.upper()} {case.path}"
    if slug == "validation-failed":
        errors = problem.get("errors") or []
        undocumented = [
            error
            for error in errors
            if not (
                (rule := DOCUMENTED_RULES.get((operation, error.get("field"))))
                and rule.fullmatch(str(error.get("message", "")))
            )
        ]
        if errors and not undocumented:
            return None
    raise AssertionError(
        f"{operation}: a request openapi.yaml accepts was refused with {response.status_code} "
        f"{slug or 'an undocumented problem'}, by no rule the operation documents: "
        f"{problem.get('detail', response.content[:200])}"
    )
