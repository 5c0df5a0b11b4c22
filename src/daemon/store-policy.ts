import type { LivePolicy, PolicyTexts, PolicyVersion } from "../ops/reload.js";
import { NO_FILTERS, compile, viewOf } from "../ops/reload.js";
import { activeRuleSet, toDescribeJson, toFiltersJson } from "../rules/store.js";
import { identitiesFrom } from "../rules/recipients.js";
import type { Scope, ScopeState, StateStore } from "../store/store.js";

const verifiedOf = (state: ScopeState) => [...state.identities.values()].filter((r) => r.verification.status === "Success").map((r) => r.identity);

/** What the MX reads of one scope: its active set, its filters, its identities whose verification succeeded. */
function versionOf(state: ScopeState, generation: number): PolicyVersion {
  return Object.freeze({
    ruleSet: activeRuleSet(state.receipt),
    identities: identitiesFrom(verifiedOf(state)),
    filters: state.receipt.filters.length === 0 ? NO_FILTERS : compile(state.receipt.filters),
    generation,
  });
}

/** The same version as texts, for acceptor processes to mirror (mirrorPolicy). */
function textsOf(state: ScopeState, generation: number): PolicyTexts {
  const ruleSet = activeRuleSet(state.receipt);
  return {
    rules: ruleSet ? JSON.stringify(toDescribeJson(ruleSet)) : null,
    filters: JSON.stringify(toFiltersJson(state.receipt.filters)),
    identities: verifiedOf(state),
    generation,
  };
}

/**
 * The MX's policy in store mode: the scope's state as the store last reported it. Every change
 * replaces the version in one assignment, so the next connection or RCPT sees it and a message
 * keeps the version it was accepted under (intake saves its rule set). `onChange` hands each
 * new version's texts to acceptor processes.
 */
export async function followStore(
  store: StateStore,
  scope: Scope,
  onChange?: (texts: PolicyTexts) => void,
): Promise<LivePolicy & { texts(): PolicyTexts; close(): void }> {
  let generation = 1;
  let state = await store.read(scope);
  let current = versionOf(state, generation);
  const unsubscribe = store.subscribe((changed, next) => {
    if (changed.account !== scope.account || changed.region !== scope.region) return;
    state = next;
    current = versionOf(next, ++generation);
    onChange?.(textsOf(next, generation));
  });
  // A change between the read and the subscription: read once more.
  state = await store.read(scope);
  current = versionOf(state, ++generation);
  return { ...viewOf(() => current), texts: () => textsOf(state, current.generation), close: unsubscribe };
}
