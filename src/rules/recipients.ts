import { domainToASCII } from "node:url";
import type { Identities, Rule } from "./model.js";

/**
 * The one form in which domains are compared (docs/behaviour.md §2): lower case, IDN labels as
 * A-labels (`xn--`), so that `münchen.test`, `MÜNCHEN.test` and `xn--mnchen-3ya.test` are one
 * domain however a rule, an identity or a client spells it (smtp-server even turns an RCPT's
 * A-labels into Unicode). A name that is not a valid IDN keeps its lower-cased spelling, and so
 * still equals only itself.
 */
export function canonicalDomain(domain: string): string {
  const lower = domain.toLowerCase();
  // For ASCII, domainToASCII would only lower-case it again; it is the slow path.
  if (!/[^\x00-\x7f]/.test(lower)) return lower;
  return domainToASCII(lower) || lower;
}

/**
 * An address split at its last `@`, lower-cased, the domain in its canonical form: comparison
 * ignores case and IDN spelling (docs/behaviour.md §2).
 */
export interface Address {
  local: string;
  domain: string;
}

export function splitAddress(address: string): Address | null {
  const at = address.lastIndexOf("@");
  if (at <= 0 || at === address.length - 1) return null;
  return { local: address.slice(0, at).toLowerCase(), domain: canonicalDomain(address.slice(at + 1)) };
}

/**
 * A Recipients entry or identity in the form recipients are compared in: lower case, its domain
 * canonical; a leading `.` stays.
 */
function canonicalEntry(entry: string): string {
  const at = entry.lastIndexOf("@");
  if (at >= 0) return `${entry.slice(0, at).toLowerCase()}@${canonicalDomain(entry.slice(at + 1))}`;
  return entry.startsWith(".") ? `.${canonicalDomain(entry.slice(1))}` : canonicalDomain(entry);
}

function isSubdomainOf(domain: string, parent: string): boolean {
  return domain.length > parent.length + 1 && domain.endsWith(parent) && domain[domain.length - parent.length - 1] === ".";
}

/** Builds the identity sets from a list of verified addresses and domains, as written. */
export function identitiesFrom(entries: Iterable<string>): Identities {
  const addresses = new Set<string>();
  const domains = new Set<string>();
  for (const entry of entries) {
    const canonical = canonicalEntry(entry.trim());
    if (canonical.includes("@")) addresses.add(canonical);
    else if (canonical) domains.add(canonical.replace(/^\./, ""));
  }
  return { addresses, domains };
}

/**
 * The identities a rule set implies when none are configured: every domain its rules name,
 * so that replaying or testing a rule set works without also describing the account.
 */
export function identitiesOfRules(rules: readonly Rule[]): Identities {
  const domains: string[] = [];
  for (const rule of rules) {
    for (const entry of rule.recipients) {
      const at = entry.lastIndexOf("@");
      domains.push(at >= 0 ? entry.slice(at + 1) : entry);
    }
  }
  return identitiesFrom(domains);
}

/** Exact verified address, or a verified domain or any subdomain of one. */
export function isInsideIdentity(recipient: string, identities: Identities): boolean {
  const address = splitAddress(recipient);
  if (!address) return false;
  if (identities.addresses.has(`${address.local}@${address.domain}`)) return true;
  let domain = address.domain;
  for (;;) {
    if (identities.domains.has(domain)) return true;
    const dot = domain.indexOf(".");
    if (dot < 0) return false;
    domain = domain.slice(dot + 1);
  }
}

/**
 * One entry of a rule's Recipients against one address (docs/behaviour.md §2 table):
 * an address without a `+label` also takes its labelled variants; one with a label only
 * itself; a domain takes that domain only; a `.domain` only its subdomains.
 */
export function entryMatches(entry: string, recipient: string): boolean {
  const address = splitAddress(recipient);
  if (!address) return false;
  const canonical = canonicalEntry(entry);
  const at = canonical.lastIndexOf("@");
  if (at >= 0) {
    const entryLocal = canonical.slice(0, at);
    if (canonical.slice(at + 1) !== address.domain) return false;
    if (entryLocal === address.local) return true;
    return !entryLocal.includes("+") && address.local.startsWith(`${entryLocal}+`);
  }
  if (canonical.startsWith(".")) return isSubdomainOf(address.domain, canonical.slice(1));
  return address.domain === canonical;
}

export function ruleMatchesRecipient(rule: Rule, recipient: string, identities: Identities): boolean {
  if (rule.recipients.length === 0) return isInsideIdentity(recipient, identities);
  return rule.recipients.some((entry) => entryMatches(entry, recipient));
}

/**
 * Every Recipients entry of a rule set, indexed by the key it can match on, so that finding
 * the rules of one recipient costs a few map look-ups instead of a scan of every entry of
 * every rule (200 rules of 100 entries each is the SES maximum).
 */
interface RecipientIndex {
  /** `local@domain` entries: the exact address (labelled or not). */
  exact: Map<string, number[]>;
  /** Unlabelled `local@domain` entries, looked up by a labelled recipient's unlabelled form. */
  unlabelled: Map<string, number[]>;
  domain: Map<string, number[]>;
  /** `.parent` entries, keyed by `parent`. */
  subdomainsOf: Map<string, number[]>;
  /** Rules without Recipients. */
  catchAll: number[];
}

const indexes = new WeakMap<readonly Rule[], RecipientIndex>();

function addTo(map: Map<string, number[]>, key: string, ruleIndex: number): void {
  const list = map.get(key);
  if (!list) map.set(key, [ruleIndex]);
  else if (list[list.length - 1] !== ruleIndex) list.push(ruleIndex);
}

function buildIndex(rules: readonly Rule[]): RecipientIndex {
  const index: RecipientIndex = {
    exact: new Map(),
    unlabelled: new Map(),
    domain: new Map(),
    subdomainsOf: new Map(),
    catchAll: [],
  };
  rules.forEach((rule, ruleIndex) => {
    if (rule.recipients.length === 0) index.catchAll.push(ruleIndex);
    for (const entry of rule.recipients) {
      const canonical = canonicalEntry(entry);
      const at = canonical.lastIndexOf("@");
      if (at >= 0) {
        addTo(index.exact, canonical, ruleIndex);
        if (!canonical.slice(0, at).includes("+")) addTo(index.unlabelled, canonical, ruleIndex);
      } else if (canonical.startsWith(".")) {
        addTo(index.subdomainsOf, canonical.slice(1), ruleIndex);
      } else {
        addTo(index.domain, canonical, ruleIndex);
      }
    }
  });
  return index;
}

function indexOf(rules: readonly Rule[]): RecipientIndex {
  let index = indexes.get(rules);
  if (!index) {
    index = buildIndex(rules);
    indexes.set(rules, index);
  }
  return index;
}

/**
 * Indices (ascending) of the rules whose Recipients match `recipient`, enabled or not;
 * the same answer as `ruleMatchesRecipient` over every rule, by look-up.
 */
export function rulesMatchingRecipient(
  rules: readonly Rule[],
  recipient: string,
  identities: Identities,
): readonly number[] {
  const address = splitAddress(recipient);
  if (!address) return [];
  const index = indexOf(rules);
  // Usually one list matches: hand it back as it is, and merge only when several do.
  const lists: number[][] = [];
  const collect = (list: number[] | undefined): void => {
    if (list) lists.push(list);
  };
  collect(index.exact.get(`${address.local}@${address.domain}`));
  const plus = address.local.indexOf("+");
  if (plus > 0) collect(index.unlabelled.get(`${address.local.slice(0, plus)}@${address.domain}`));
  collect(index.domain.get(address.domain));
  for (let dot = address.domain.indexOf("."); dot >= 0; dot = address.domain.indexOf(".", dot + 1)) {
    collect(index.subdomainsOf.get(address.domain.slice(dot + 1)));
  }
  if (index.catchAll.length > 0 && isInsideIdentity(recipient, identities)) collect(index.catchAll);
  if (lists.length <= 1) return lists[0] ?? [];
  return [...new Set(lists.flat())].sort((a, b) => a - b);
}
