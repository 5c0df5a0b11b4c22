import type { IpFilter, RuleSet } from "../rules/model.js";
import { identitiesFrom } from "../rules/recipients.js";
import { newIdentity } from "./identity.js";
import type { ScopeState } from "./store.js";

/** Rule set and filter files, as `receiptd state import`, file mode and a seed bring them in. */
export interface ImportedFiles {
  ruleSet: RuleSet;
  /** Absent: the scope's filters stay. */
  filters?: readonly IpFilter[];
  /** Verified at once; the others stay as they are. */
  identities?: readonly string[];
}

/**
 * The files' rule set replaces the set of that name (keeping its creation time) and becomes the
 * active one; their filters replace the scope's; their identities are added as verified.
 */
export function importFiles(state: ScopeState, files: ImportedFiles, now: Date): ScopeState {
  const ruleSets = new Map(state.receipt.ruleSets);
  const createdTimestamp = ruleSets.get(files.ruleSet.name)?.createdTimestamp ?? files.ruleSet.createdTimestamp ?? now.toISOString();
  ruleSets.set(files.ruleSet.name, Object.freeze({ ...files.ruleSet, createdTimestamp }));
  const identities = new Map(state.identities);
  if (files.identities) {
    const { addresses, domains } = identitiesFrom(files.identities);
    for (const identity of addresses) if (!identities.has(identity)) identities.set(identity, newIdentity(identity, "EmailAddress", now, "Success"));
    for (const identity of domains) if (!identities.has(identity)) identities.set(identity, newIdentity(identity, "Domain", now, "Success"));
  }
  return Object.freeze({
    ...state,
    receipt: Object.freeze({
      ruleSets,
      activeName: files.ruleSet.name,
      filters: files.filters ? Object.freeze([...files.filters]) : state.receipt.filters,
    }),
    identities,
  });
}
