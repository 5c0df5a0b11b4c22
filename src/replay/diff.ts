import type { ActionTrace, EvaluationTrace, RuleStop } from "../rules/evaluate.js";
import { REPLIES } from "../rules/recipient-policy.js";
import type { ReplayResult } from "./replay.js";

/** What a recipient got at RCPT TO: accepted, or the reply it was refused with. */
export type RcptAnswer = "accepted" | string;

/** Where evaluation ended: the rule and action that stopped it, or null when it ran to the end. */
export interface StopPoint {
  rule: string;
  /** Position of the stopping action within the rule. */
  action: number;
  stop: RuleStop;
}

export interface ParamChange {
  field: string;
  before: string | null;
  after: string | null;
}

export type MessageChange =
  | { kind: "recipient"; recipient: string; before: RcptAnswer; after: RcptAnswer }
  /** A recipient newly refused because a rule now requires TLS. */
  | { kind: "tls"; recipient: string; before: RcptAnswer; after: RcptAnswer }
  | { kind: "rules-matched"; before: string[]; after: string[]; added: string[]; removed: string[] }
  | { kind: "action"; rule: string; change: "added" | "removed"; type: string; params: Record<string, string> }
  | { kind: "action"; rule: string; change: "parameters"; type: string; params: ParamChange[] }
  | { kind: "stop"; before: StopPoint | null; after: StopPoint | null };

export type ChangeKind = MessageChange["kind"];
export const CHANGE_KINDS: readonly ChangeKind[] = ["recipient", "tls", "rules-matched", "action", "stop"];

function answers(result: ReplayResult): Map<string, RcptAnswer> {
  const answer = new Map<string, RcptAnswer>(result.accepted.map((recipient) => [recipient, "accepted"]));
  for (const { recipient, reply } of result.refused) answer.set(recipient, reply);
  return answer;
}

function stopPoint(trace: EvaluationTrace | null): StopPoint | null {
  const last = trace?.rules.at(-1);
  if (!last?.stop) return null;
  // The stopping action is the last one that was not cut off.
  const action = last.actions.findLastIndex((a) => a.outcome !== "skipped");
  return { rule: last.name, action, stop: last.stop };
}

/**
 * Stop actions are left to the `stop` change: a Stop moved is one change of where evaluation
 * ends, not a removed and an added action besides.
 */
function comparableActions(actions: readonly ActionTrace[]): ActionTrace[] {
  return actions.filter((action) => action.type !== "Stop");
}

/** The action's own SES fields, as written in the rule. */
function paramsOf(action: ActionTrace): Record<string, string> {
  const fields = Object.entries(action.params as object).filter(([, value]) => value !== undefined);
  return Object.fromEntries(fields.map(([field, value]) => [field, typeof value === "string" ? value : JSON.stringify(value)]));
}

function paramChanges(before: ActionTrace, after: ActionTrace): ParamChange[] {
  const old = paramsOf(before);
  const changed = paramsOf(after);
  const fields = [...new Set([...Object.keys(old), ...Object.keys(changed)])].sort();
  return fields
    .filter((field) => old[field] !== changed[field])
    .map((field) => ({ field, before: old[field] ?? null, after: changed[field] ?? null }));
}

/**
 * Actions of one rule, paired along the longest common sequence of their types (so that one
 * action inserted or removed does not shift every action after it); a pair whose parameters
 * differ changed, and anything unpaired was added or removed.
 */
function actionChanges(rule: string, before: readonly ActionTrace[], after: readonly ActionTrace[]): MessageChange[] {
  const old = comparableActions(before);
  const changed = comparableActions(after);
  // common[i][j]: length of the longest common type sequence of old[i..] and changed[j..].
  const common = Array.from({ length: old.length + 1 }, () => new Array<number>(changed.length + 1).fill(0));
  for (let i = old.length - 1; i >= 0; i--) {
    for (let j = changed.length - 1; j >= 0; j--) {
      common[i]![j] =
        old[i]!.type === changed[j]!.type ? common[i + 1]![j + 1]! + 1 : Math.max(common[i + 1]![j]!, common[i]![j + 1]!);
    }
  }
  const changes: MessageChange[] = [];
  let i = 0;
  let j = 0;
  while (i < old.length || j < changed.length) {
    const a = old[i];
    const b = changed[j];
    if (a && b && a.type === b.type) {
      const params = paramChanges(a, b);
      if (params.length > 0) changes.push({ kind: "action", rule, change: "parameters", type: a.type, params });
      i++;
      j++;
    } else if (a && (!b || common[i + 1]![j]! >= common[i]![j + 1]!)) {
      changes.push({ kind: "action", rule, change: "removed", type: a.type, params: paramsOf(a) });
      i++;
    } else {
      changes.push({ kind: "action", rule, change: "added", type: b!.type, params: paramsOf(b!) });
      j++;
    }
  }
  return changes;
}

function sameStop(a: StopPoint | null, b: StopPoint | null): boolean {
  return a === b || (a !== null && b !== null && a.rule === b.rule && a.action === b.action && a.stop === b.stop);
}

/**
 * What changes for one message between its replay under the old rule set and under the new
 * one (same file, envelope and settings). Each difference is reported once, by its cause: when
 * one side accepted nothing, no rule ran there, and only the recipients' answers are reported.
 */
export function diffResults(before: ReplayResult, after: ReplayResult): MessageChange[] {
  const changes: MessageChange[] = [];
  const old = answers(before);
  const changed = answers(after);
  for (const recipient of new Set([...old.keys(), ...changed.keys()])) {
    const a = old.get(recipient) ?? "accepted";
    const b = changed.get(recipient) ?? "accepted";
    if (a === b) continue;
    const kind = b === REPLIES.mustStartTls ? "tls" : "recipient";
    changes.push({ kind, recipient, before: a, after: b });
  }
  if (!before.trace || !after.trace) return changes;

  const oldRules = before.trace.rules.map((rule) => rule.name);
  const newRules = after.trace.rules.map((rule) => rule.name);
  if (oldRules.join("\0") !== newRules.join("\0")) {
    changes.push({
      kind: "rules-matched",
      before: oldRules,
      after: newRules,
      added: newRules.filter((name) => !oldRules.includes(name)),
      removed: oldRules.filter((name) => !newRules.includes(name)),
    });
  }
  // An added or removed rule's actions come with it; only a rule on both sides can change its own.
  const oldByName = new Map(before.trace.rules.map((rule) => [rule.name, rule]));
  for (const rule of after.trace.rules) {
    const was = oldByName.get(rule.name);
    if (was) changes.push(...actionChanges(rule.name, was.actions, rule.actions));
  }
  const oldStop = stopPoint(before.trace);
  const newStop = stopPoint(after.trace);
  if (!sameStop(oldStop, newStop)) changes.push({ kind: "stop", before: oldStop, after: newStop });
  return changes;
}

/** The rules a change is about, for the summary. */
export function rulesInvolved(change: MessageChange): string[] {
  switch (change.kind) {
    case "rules-matched":
      if (change.added.length + change.removed.length > 0) return [...change.added, ...change.removed];
      // Reordered: the rules that moved.
      return change.after.filter((name, index) => change.before[index] !== name);
    case "action":
      return [change.rule];
    case "stop":
      return [...new Set([change.before?.rule, change.after?.rule].filter((rule): rule is string => rule !== undefined))];
    case "recipient":
    case "tls":
      return [];
  }
}
