import type { LivePolicy, PolicyVersion } from "../ops/reload.js";
import { NO_FILTERS, compile, viewOf } from "../ops/reload.js";
import { activeRuleSet } from "../rules/store.js";
import { identitiesFrom } from "../rules/recipients.js";
import type { Scope, ScopeState, StateStore } from "../store/store.js";

/** What the MX reads of one scope: its active set, its filters, its identities whose verification succeeded. */
function versionOf(state: ScopeState, generation: number): PolicyVersion {
  const verified = [...state.identities.values()].filter((r) => r.verification.status === "Success").map((r) => r.identity);
  return Object.freeze({
    ruleSet: activeRuleSet(state.receipt),
    identities: identitiesFrom(verified),
    filters: state.receipt.filters.length === 0 ? NO_FILTERS : compile(state.receipt.filters),
    generation,
  });
}

/**
 * The MX's policy in store mode: the scope's state as the store last reported it. Every change
 * replaces the version in one assignment, so the next connection or RCPT sees it and a message
 * keeps the version it was accepted under (intake saves its rule set).
 */
export async function followStore(store: StateStore, scope: Scope): Promise<LivePolicy & { close(): void }> {
  let generation = 1;
  let current = versionOf(await store.read(scope), generation);
  const unsubscribe = store.subscribe((changed, state) => {
    if (changed.account !== scope.account || changed.region !== scope.region) return;
    current = versionOf(state, ++generation);
  });
  // A change between the read and the subscription: read once more.
  current = versionOf(await store.read(scope), ++generation);
  return { ...viewOf(() => current), close: unsubscribe };
}
