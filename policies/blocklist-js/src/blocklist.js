// wasmpay policy plugin: blocklist.
//
// Implements `wasmpay:policy/policy@0.1.0` (wit/policy/policy.wit) in JavaScript; build.mjs
// turns this file into a WebAssembly component with ComponentizeJS.
//
// Setting `blocked_parties`: a comma-separated list of user ids, wallet ids (UUIDs) and
// e-mail addresses. A posting is refused when any party to it is on the list:
//   - its initiator (user id),
//   - its wallet (wallet id),
//   - its recipient (a wallet id, or an e-mail address).
// Otherwise it is allowed with no fee and no requirements.
//
// Parsing is kept deliberately simple: entries are split on ',', trimmed and lower-cased
// (e-mail addresses compare case-insensitively; UUIDs are hex, so lower-casing them too makes
// "ABC…" and "abc…" the same id). Empty entries (",,", a trailing ",") are dropped. Every
// other entry is taken as given, without validating it as a UUID or an e-mail address: a
// malformed entry simply matches no party. If the setting is given more than once, the lists
// are joined.
//
// The component must stay pure: no console, no Date, no Math.random, no fetch. It is built
// with every ComponentizeJS feature disabled, so any of those would trap.
//
// Binding conventions of ComponentizeJS (jco):
//   - record fields are camelCase properties (`refundOf`, `minorUnits`);
//   - option<T> is the value or `undefined`/`null`;
//   - variants are `{ tag: 'case-name', val: payload }`;
//   - tuple<string, string> is a two-element array.

/** The settings name this plugin reads. */
const SETTING = 'blocked_parties';

/** The refusal for any blocked party. Its detail deliberately does not say which party. */
const REFUSAL = Object.freeze({
  status: 403,
  slug: 'party-blocked',
  title: 'Party blocked',
  detail: 'a party to this posting may not move money on this platform',
});

/** Trims and lower-cases an id or e-mail address for comparison. */
function normalize(value) {
  return String(value).trim().toLowerCase();
}

/**
 * The set of blocked parties named by the settings.
 * @param {Array<[string, string]>} settings
 * @returns {Set<string>}
 */
function blockedParties(settings) {
  const blocked = new Set();
  for (const [name, value] of settings) {
    if (name !== SETTING) continue;
    for (const entry of value.split(',')) {
      const party = normalize(entry);
      if (party !== '') blocked.add(party);
    }
  }
  return blocked;
}

/**
 * Every party the posting names: initiator, wallet and recipient (wallet id or e-mail).
 * @returns {string[]}
 */
function partiesOf(posting) {
  const parties = [posting.initiator];
  if (posting.wallet != null) parties.push(posting.wallet);
  if (posting.recipient != null) {
    // Both cases (`wallet`, `email`) carry a string.
    parties.push(posting.recipient.val);
  }
  return parties.map(normalize).filter((p) => p !== '');
}

/** The exported `wasmpay:policy/policy` interface. */
export const policy = {
  /**
   * Decides on one posting. Pure: the same posting and settings give the same decision.
   * @returns {{tag: 'allow', val: object} | {tag: 'refuse', val: object}}
   */
  evaluate(posting, settings) {
    const blocked = blockedParties(settings);
    if (blocked.size > 0 && partiesOf(posting).some((p) => blocked.has(p))) {
      return { tag: 'refuse', val: { ...REFUSAL } };
    }
    return { tag: 'allow', val: { fee: undefined, requirements: [] } };
  },
};
