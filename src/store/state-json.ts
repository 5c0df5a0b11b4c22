import { parseFilters, parseRuleSet } from "../rules/validate.js";
import type { IpFilter } from "../rules/model.js";
import { EMPTY_STATE, toDescribeJson } from "../rules/store.js";
import type { RuleSetJson } from "../rules/store.js";
import type { IdentityRecord, ScopeState } from "./store.js";

/** A scope's state as it is written to disk: SES's own JSON for rule sets and filters. */
export interface ScopeStateJson {
  ruleSets: RuleSetJson[];
  active: string | null;
  filters: { Name: string; IpFilter: { Cidr: string; Policy: string } }[];
  identities: IdentityRecord[];
  sendingEnabled: boolean;
  revision: number;
}

export const EMPTY_SCOPE_STATE: ScopeState = Object.freeze({
  receipt: EMPTY_STATE,
  identities: new Map<string, IdentityRecord>(),
  sendingEnabled: true,
  revision: 0,
});

export function scopeStateToJson(state: ScopeState): ScopeStateJson {
  return {
    ruleSets: [...state.receipt.ruleSets.values()].map(toDescribeJson),
    active: state.receipt.activeName,
    filters: state.receipt.filters.map((f: IpFilter) => ({ Name: f.name, IpFilter: { Cidr: f.cidr, Policy: f.policy } })),
    identities: [...state.identities.values()],
    sendingEnabled: state.sendingEnabled,
    revision: state.revision,
  };
}

/**
 * The state back, each rule set through the validator that checked it when it was written, so
 * that what the MX evaluates is always a valid set. A document that does not load throws,
 * naming `source`: a store is never silently reset.
 */
export function scopeStateFromJson(json: ScopeStateJson, source: string): ScopeState {
  const ruleSets = new Map();
  for (const [i, doc] of json.ruleSets.entries()) {
    const parsed = parseRuleSet(doc);
    if (!parsed.ok) throw new Error(`${source}: rule set ${i} does not load: ${parsed.issues.map((x) => `${x.path}: ${x.message}`).join("; ")}`);
    ruleSets.set(parsed.value.name, parsed.value);
  }
  const filters = parseFilters({ Filters: json.filters });
  if (!filters.ok) throw new Error(`${source}: filters do not load: ${filters.issues.map((x) => `${x.path}: ${x.message}`).join("; ")}`);
  if (json.active !== null && !ruleSets.has(json.active)) throw new Error(`${source}: the active rule set ${json.active} is missing`);
  return Object.freeze({
    receipt: Object.freeze({ ruleSets, activeName: json.active, filters: Object.freeze(filters.value.map((f) => Object.freeze(f))) }),
    identities: new Map(json.identities.map((record) => [record.identity, Object.freeze(record)])),
    sendingEnabled: json.sendingEnabled,
    revision: json.revision,
  });
}
