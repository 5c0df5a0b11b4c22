import type { ReceiptAction, ReceiptRule } from "@aws-sdk/client-ses";
import { ACTION_KEYS } from "./model.js";
import type { IpFilter, Rule, RuleSet } from "./model.js";
import { parseFilters, parseRuleSet } from "./validate.js";
import type { ValidationIssue } from "./validate.js";
import { RULE_SET_LIMITS } from "../ses/limits.js";

/**
 * The receipt rule set API of SES (CreateReceiptRuleSet ... SetReceiptRulePosition, and the IP
 * filter calls) as a pure state machine over one account's state. Every operation returns a new
 * state or throws a ReceiptApiError with the SES error code; nothing is ever changed in place,
 * so a rule set handed to the evaluator stays as it was when a message was accepted (docs/behaviour.md §1).
 */
export interface ReceiptState {
  /** In creation order, which is the order ListReceiptRuleSets reports. */
  ruleSets: ReadonlyMap<string, RuleSet>;
  /** Always names a set in `ruleSets`: the active set cannot be deleted. */
  activeName: string | null;
  filters: readonly IpFilter[];
}

export const EMPTY_STATE: ReceiptState = Object.freeze({
  ruleSets: new Map<string, RuleSet>(),
  activeName: null,
  filters: Object.freeze([]),
});

export type ReceiptErrorCode =
  | "AlreadyExists"
  | "CannotDelete"
  | "LimitExceeded"
  | "RuleDoesNotExist"
  | "RuleSetDoesNotExist"
  | "InvalidParameterValue";

export class ReceiptApiError extends Error {
  override readonly name = "ReceiptApiError";

  constructor(
    readonly code: ReceiptErrorCode,
    message: string,
    /** The rule set, rule or filter the error is about (SES's `Name` member). */
    readonly subject?: string,
  ) {
    super(message);
  }
}

// The validator enforces the per-rule limits too, as an invalid document; SES answers
// LimitExceeded instead (UpdateReceiptRule lists it, and an update can exceed no other limit),
// so they are checked before the validator runs.
const PER_RULE_LIMITS = { Actions: RULE_SET_LIMITS.actionsPerRule, Recipients: RULE_SET_LIMITS.recipientsPerRule } as const;

function invalid(issues: ValidationIssue[], path: (p: string) => string): ReceiptApiError {
  return new ReceiptApiError("InvalidParameterValue", issues.map((i) => `${path(i.path)}: ${i.message}`).join("; "));
}

/**
 * A name parameter is checked as a rule set name by the validator itself, so that the API and
 * rule set files cannot come to disagree on what a valid name is.
 */
function checkName(name: string, parameter: string): void {
  const parsed = parseRuleSet({ Metadata: { Name: name } });
  if (!parsed.ok) throw invalid(parsed.issues, () => parameter);
}

function checkRuleLimits(rule: unknown): void {
  if (typeof rule !== "object" || rule === null) return;
  for (const [key, max] of Object.entries(PER_RULE_LIMITS)) {
    const value: unknown = (rule as Record<string, unknown>)[key];
    if (Array.isArray(value) && value.length > max) {
      throw new ReceiptApiError("LimitExceeded", `Rule.${key}: at most ${max} allowed, found ${value.length}`);
    }
  }
}

/** Validates an SES ReceiptRule the way a rule set file's rules are validated. */
/** A rule in SES JSON checked as CreateReceiptRule checks it, without a state. */
export function checkedRule(rule: unknown): Rule {
  return parseRule(rule);
}

function parseRule(rule: unknown): Rule {
  checkRuleLimits(rule);
  const parsed = parseRuleSet({ Rules: [rule] });
  if (!parsed.ok) throw invalid(parsed.issues, (p) => p.replace(/^Rules\[0\]/, "Rule"));
  // The validator returns one rule for one valid rule, already frozen.
  return parsed.value.rules[0] as Rule;
}

function freezeRuleSet(name: string, createdTimestamp: string | undefined, rules: Rule[]): RuleSet {
  Object.freeze(rules);
  return Object.freeze(createdTimestamp === undefined ? { name, rules } : { name, createdTimestamp, rules });
}

function getRuleSet(state: ReceiptState, name: string): RuleSet {
  const ruleSet = state.ruleSets.get(name);
  if (ruleSet === undefined) throw new ReceiptApiError("RuleSetDoesNotExist", `Rule set does not exist: ${name}`, name);
  return ruleSet;
}

function indexOfRule(ruleSet: RuleSet, name: string): number {
  const index = ruleSet.rules.findIndex((rule) => rule.name === name);
  if (index < 0) throw new ReceiptApiError("RuleDoesNotExist", `Rule does not exist: ${name}`, name);
  return index;
}

/** Index at which a rule placed right behind `after` goes; the front without `after`. */
function insertionIndex(rules: readonly Rule[], after: string | undefined): number {
  if (after === undefined) return 0;
  const index = rules.findIndex((rule) => rule.name === after);
  if (index < 0) throw new ReceiptApiError("RuleDoesNotExist", `Rule does not exist: ${after}`, after);
  return index + 1;
}

function withRules(state: ReceiptState, ruleSet: RuleSet, rules: Rule[]): ReceiptState {
  const ruleSets = new Map(state.ruleSets);
  ruleSets.set(ruleSet.name, freezeRuleSet(ruleSet.name, ruleSet.createdTimestamp, rules));
  return Object.freeze({ ...state, ruleSets });
}

function addRuleSet(state: ReceiptState, ruleSet: RuleSet): ReceiptState {
  if (state.ruleSets.has(ruleSet.name)) {
    throw new ReceiptApiError("AlreadyExists", `Rule set already exists: ${ruleSet.name}`, ruleSet.name);
  }
  if (state.ruleSets.size >= RULE_SET_LIMITS.ruleSets) {
    throw new ReceiptApiError("LimitExceeded", `An account has at most ${RULE_SET_LIMITS.ruleSets} rule sets`);
  }
  return Object.freeze({ ...state, ruleSets: new Map(state.ruleSets).set(ruleSet.name, ruleSet) });
}

export function activeRuleSet(state: ReceiptState): RuleSet | null {
  return state.activeName === null ? null : (state.ruleSets.get(state.activeName) ?? null);
}

/** `now` becomes the set's CreatedTimestamp; it is passed in so that the store has no clock. */
export function createReceiptRuleSet(state: ReceiptState, name: string, now: Date): ReceiptState {
  checkName(name, "RuleSetName");
  return addRuleSet(state, freezeRuleSet(name, now.toISOString(), []));
}

/**
 * The clone shares the original's rule objects: they are frozen, and every change to either set
 * builds new ones, so the two are as independent as SES promises.
 */
export function cloneReceiptRuleSet(state: ReceiptState, name: string, originalName: string, now: Date): ReceiptState {
  checkName(name, "RuleSetName");
  checkName(originalName, "OriginalRuleSetName");
  const original = getRuleSet(state, originalName);
  return addRuleSet(state, freezeRuleSet(name, now.toISOString(), [...original.rules]));
}

/** Deleting a set that does not exist succeeds: SES documents no RuleSetDoesNotExist here. */
export function deleteReceiptRuleSet(state: ReceiptState, name: string): ReceiptState {
  checkName(name, "RuleSetName");
  if (name === state.activeName) throw new ReceiptApiError("CannotDelete", `Cannot delete active rule set: ${name}`, name);
  if (!state.ruleSets.has(name)) return state;
  const ruleSets = new Map(state.ruleSets);
  ruleSets.delete(name);
  return Object.freeze({ ...state, ruleSets });
}

/** Without a name (null or undefined, as SES allows), no set is active and all mail is refused. */
export function setActiveReceiptRuleSet(state: ReceiptState, name: string | null | undefined): ReceiptState {
  if (name === null || name === undefined) return Object.freeze({ ...state, activeName: null });
  checkName(name, "RuleSetName");
  getRuleSet(state, name);
  return Object.freeze({ ...state, activeName: name });
}

export function describeReceiptRuleSet(state: ReceiptState, name: string): RuleSet {
  checkName(name, "RuleSetName");
  return getRuleSet(state, name);
}

/** Without `after` the rule goes to the front of the set, with it right behind that rule. */
export function createReceiptRule(state: ReceiptState, ruleSetName: string, rule: unknown, after?: string): ReceiptState {
  checkName(ruleSetName, "RuleSetName");
  if (after !== undefined) checkName(after, "After");
  const created = parseRule(rule);
  const ruleSet = getRuleSet(state, ruleSetName);
  if (ruleSet.rules.some((r) => r.name === created.name)) {
    throw new ReceiptApiError("AlreadyExists", `Rule already exists: ${created.name}`, created.name);
  }
  const index = insertionIndex(ruleSet.rules, after);
  if (ruleSet.rules.length >= RULE_SET_LIMITS.rulesPerSet) {
    throw new ReceiptApiError("LimitExceeded", `A rule set has at most ${RULE_SET_LIMITS.rulesPerSet} rules`);
  }
  return withRules(state, ruleSet, ruleSet.rules.toSpliced(index, 0, created));
}

/** Replaces the whole rule: what the new rule leaves out takes its default, not the old value. */
export function updateReceiptRule(state: ReceiptState, ruleSetName: string, rule: unknown): ReceiptState {
  checkName(ruleSetName, "RuleSetName");
  const updated = parseRule(rule);
  const ruleSet = getRuleSet(state, ruleSetName);
  return withRules(state, ruleSet, ruleSet.rules.with(indexOfRule(ruleSet, updated.name), updated));
}

/** Deleting a rule that is not in the set succeeds and changes nothing (docs/behaviour.md §1). */
export function deleteReceiptRule(state: ReceiptState, ruleSetName: string, ruleName: string): ReceiptState {
  checkName(ruleSetName, "RuleSetName");
  checkName(ruleName, "RuleName");
  const ruleSet = getRuleSet(state, ruleSetName);
  const rules = ruleSet.rules.filter((rule) => rule.name !== ruleName);
  return rules.length === ruleSet.rules.length ? state : withRules(state, ruleSet, rules);
}

/** Without `after` the rule moves to the front of the set, with it right behind that rule. */
export function setReceiptRulePosition(
  state: ReceiptState,
  ruleSetName: string,
  ruleName: string,
  after?: string,
): ReceiptState {
  checkName(ruleSetName, "RuleSetName");
  checkName(ruleName, "RuleName");
  if (after !== undefined) checkName(after, "After");
  const ruleSet = getRuleSet(state, ruleSetName);
  const index = indexOfRule(ruleSet, ruleName);
  // Once the rule is taken out, `after` naming the rule itself would read as a missing rule.
  if (after === ruleName) {
    throw new ReceiptApiError("InvalidParameterValue", `After: a rule cannot be placed after itself: ${ruleName}`);
  }
  const rest = ruleSet.rules.toSpliced(index, 1);
  return withRules(state, ruleSet, rest.toSpliced(insertionIndex(rest, after), 0, ruleSet.rules[index] as Rule));
}

/** `ruleNames` must name every rule of the set exactly once, as SES requires. */
export function reorderReceiptRuleSet(state: ReceiptState, ruleSetName: string, ruleNames: readonly string[]): ReceiptState {
  checkName(ruleSetName, "RuleSetName");
  ruleNames.forEach((name, index) => checkName(name, `RuleNames[${index}]`));
  const ruleSet = getRuleSet(state, ruleSetName);
  const byName = new Map(ruleSet.rules.map((rule) => [rule.name, rule]));
  const seen = new Set<string>();
  const rules = ruleNames.map((name) => {
    const rule = byName.get(name);
    if (rule === undefined) throw new ReceiptApiError("RuleDoesNotExist", `Rule does not exist: ${name}`, name);
    if (seen.has(name)) throw new ReceiptApiError("InvalidParameterValue", `RuleNames: ${name} is named twice`);
    seen.add(name);
    return rule;
  });
  const missing = ruleSet.rules.filter((rule) => !seen.has(rule.name)).map((rule) => rule.name);
  if (missing.length > 0) {
    throw new ReceiptApiError(
      "InvalidParameterValue",
      `RuleNames: every rule of the set must be positioned; missing: ${missing.join(", ")}`,
    );
  }
  return withRules(state, ruleSet, rules);
}

export function describeReceiptRule(state: ReceiptState, ruleSetName: string, ruleName: string): Rule {
  checkName(ruleSetName, "RuleSetName");
  checkName(ruleName, "RuleName");
  const ruleSet = getRuleSet(state, ruleSetName);
  return ruleSet.rules[indexOfRule(ruleSet, ruleName)] as Rule;
}

/** New filters go last; their order has no meaning, as Allow wins over Block (docs/behaviour.md §4). */
export function createReceiptFilter(state: ReceiptState, filter: unknown): ReceiptState {
  const parsed = parseFilters({ Filters: [filter] });
  if (!parsed.ok) throw invalid(parsed.issues, (p) => p.replace(/^Filters\[0\]/, "Filter"));
  const created = Object.freeze(parsed.value[0] as IpFilter);
  if (state.filters.some((f) => f.name === created.name)) {
    throw new ReceiptApiError("AlreadyExists", `Filter already exists: ${created.name}`, created.name);
  }
  if (state.filters.length >= RULE_SET_LIMITS.filters) {
    throw new ReceiptApiError("LimitExceeded", `An account has at most ${RULE_SET_LIMITS.filters} IP filters`);
  }
  return Object.freeze({ ...state, filters: Object.freeze([...state.filters, created]) });
}

/** Deleting a filter that does not exist succeeds: SES documents no error for DeleteReceiptFilter. */
export function deleteReceiptFilter(state: ReceiptState, name: string): ReceiptState {
  checkName(name, "FilterName");
  const filters = state.filters.filter((f) => f.name !== name);
  return filters.length === state.filters.length ? state : Object.freeze({ ...state, filters: Object.freeze(filters) });
}

/** The JSON of `aws ses describe-receipt-rule-set`, from which parseRuleSet gives the same set back. */
export interface RuleSetJson {
  Metadata: { Name: string; CreatedTimestamp?: string };
  Rules: ReceiptRule[];
}

/**
 * A rule as SES prints it. Recipients are left out when there are none, as an empty list would
 * read as "matches nobody" where it means "matches every verified recipient".
 */
export function toReceiptRuleJson(rule: Rule): ReceiptRule {
  return {
    Name: rule.name,
    Enabled: rule.enabled,
    TlsPolicy: rule.tlsPolicy,
    ...(rule.recipients.length > 0 ? { Recipients: [...rule.recipients] } : {}),
    Actions: rule.actions.map((action) => ({ [ACTION_KEYS[action.type]]: { ...action.params } }) as ReceiptAction),
    ScanEnabled: rule.scanEnabled,
  };
}

export function toDescribeJson(ruleSet: RuleSet): RuleSetJson {
  const Metadata: RuleSetJson["Metadata"] = { Name: ruleSet.name };
  if (ruleSet.createdTimestamp !== undefined) Metadata.CreatedTimestamp = ruleSet.createdTimestamp;
  return { Metadata, Rules: ruleSet.rules.map(toReceiptRuleJson) };
}

/** Filters as `aws ses list-receipt-filters` prints them: what a filters file holds. */
export function toFiltersJson(filters: readonly IpFilter[]): { Filters: { Name: string; IpFilter: { Policy: IpFilter["policy"]; Cidr: string } }[] } {
  return { Filters: filters.map((filter) => ({ Name: filter.name, IpFilter: { Policy: filter.policy, Cidr: filter.cidr } })) };
}
