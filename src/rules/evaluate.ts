import type { ActionCall, ActionExecutor, ActionOutcome } from "./executor.js";
import type { ActionType, Envelope, Header, Identities, Rule, RuleAction, RuleSet } from "./model.js";
import { rulesMatchingRecipient } from "./recipients.js";

export interface EvaluationInput<M> {
  /** The rule set snapshot taken when the message was accepted. */
  ruleSet: RuleSet;
  identities: Identities;
  /** The envelope, with only the recipients that were accepted at RCPT TO. */
  envelope: Envelope;
  messageId: string;
  message: M;
  /** Headers the engine prepended on receipt (Return-Path, Received, ...), top first. */
  prependedHeaders?: readonly Header[];
  /**
   * Outcomes already recorded for this message, in execution order, from an earlier run
   * that was interrupted. They are taken as they are instead of calling the executor again,
   * so flow (Lambda dispositions) and header edits come out the same and processing goes on
   * at the first action without an outcome.
   */
  recorded?: readonly ActionOutcome[];
}

/** Why a rule's actions were cut short: a Stop action, or a RequestResponse Lambda's disposition. */
export type RuleStop = "Stop" | "STOP_RULE" | "STOP_RULE_SET";

export type ActionTrace = RuleAction & {
  outcome: "done" | "skipped" | "failed";
  /** For a RequestResponse Lambda: the disposition it returned (null when it returned none). */
  disposition?: string | null;
  detail?: Record<string, unknown>;
  failure?: "transient" | "permanent";
  error?: string;
};

export interface RuleTrace {
  name: string;
  /** Position of the rule in the rule set. */
  index: number;
  recipients: string[];
  actions: ActionTrace[];
  stop: RuleStop | null;
}

export interface EvaluationTrace {
  messageId: string;
  /** The matching enabled rules, in order, up to the one where evaluation ended. */
  rules: RuleTrace[];
  /** `failed`: an action failed and the rest of the evaluation was abandoned (docs/behaviour.md §8). */
  end: "completed" | "stopped" | "failed";
  /** Every outcome in execution order: what `recorded` takes to resume. */
  outcomes: ActionOutcome[];
  /** The headers prepended to the message at the end, top first. */
  prependedHeaders: Header[];
}

const STOP_DISPOSITIONS: Record<string, RuleStop> = { STOP_RULE: "STOP_RULE", STOP_RULE_SET: "STOP_RULE_SET" };

/** docs/behaviour.md §3: only a RequestResponse Lambda can change the flow, and any unknown value continues. */
function dispositionStop(action: RuleAction, outcome: ActionOutcome): RuleStop | null {
  if (action.type !== "Lambda" || action.params.InvocationType !== "RequestResponse") return null;
  if (outcome.status !== "done" || typeof outcome.disposition !== "string") return null;
  return STOP_DISPOSITIONS[outcome.disposition.toUpperCase()] ?? null;
}

function matchingRules(ruleSet: RuleSet, envelope: Envelope, identities: Identities): Map<number, string[]> {
  const byRule = new Map<number, string[]>();
  for (const recipient of envelope.recipients) {
    for (const ruleIndex of rulesMatchingRecipient(ruleSet.rules, recipient, identities)) {
      if (!ruleSet.rules[ruleIndex]!.enabled) continue;
      const recipients = byRule.get(ruleIndex);
      if (recipients) recipients.push(recipient);
      else byRule.set(ruleIndex, [recipient]);
    }
  }
  return byRule;
}

function skipped(action: RuleAction): ActionTrace {
  return { ...action, outcome: "skipped" };
}

function traced(action: RuleAction, outcome: ActionOutcome): ActionTrace {
  if (outcome.status === "failed") {
    return { ...action, outcome: "failed", failure: outcome.failure, error: outcome.error };
  }
  const trace: ActionTrace = { ...action, outcome: "done" };
  if (action.type === "Lambda" && action.params.InvocationType === "RequestResponse") {
    trace.disposition = outcome.disposition ?? null;
  }
  if (outcome.detail) trace.detail = outcome.detail;
  return trace;
}

/**
 * Evaluates one message against a rule set (docs/behaviour.md §3): matching enabled rules in
 * order, each once with the recipients it matched, actions in order through the executor.
 * Pure apart from the executor: no clock, no randomness, no I/O of its own.
 */
export async function evaluate<M>(input: EvaluationInput<M>, executor: ActionExecutor<M>): Promise<EvaluationTrace> {
  const { ruleSet, envelope, messageId, message } = input;
  const recorded = input.recorded ?? [];
  let prependedHeaders: Header[] = [...(input.prependedHeaders ?? [])];
  const trace: EvaluationTrace = { messageId, rules: [], end: "completed", outcomes: [], prependedHeaders };

  const run = async (rule: Rule, ruleIndex: number, actionIndex: number, recipients: string[], action: RuleAction) => {
    if (action.type === "AddHeader") {
      prependedHeaders = [{ name: action.params.HeaderName!, value: action.params.HeaderValue! }, ...prependedHeaders];
    }
    const replayed = recorded[trace.outcomes.length];
    if (replayed) return replayed;
    const call = {
      type: action.type,
      params: action.params,
      rule,
      ruleIndex,
      actionIndex,
      recipients,
      envelope,
      messageId,
      prependedHeaders,
      message,
    } as ActionCall<ActionType, M>;
    // The mapped executor type cannot be indexed by a union key without widening the call.
    const execute = executor[action.type] as (call: ActionCall<ActionType, M>) => Promise<ActionOutcome>;
    return execute(call);
  };

  for (const [ruleIndex, recipients] of [...matchingRules(ruleSet, envelope, input.identities)].sort(([a], [b]) => a - b)) {
    const rule = ruleSet.rules[ruleIndex]!;
    const ruleTrace: RuleTrace = { name: rule.name, index: ruleIndex, recipients, actions: [], stop: null };
    trace.rules.push(ruleTrace);
    for (const [actionIndex, action] of rule.actions.entries()) {
      if (ruleTrace.stop !== null || trace.end === "failed") {
        ruleTrace.actions.push(skipped(action));
        continue;
      }
      const outcome = await run(rule, ruleIndex, actionIndex, recipients, action);
      trace.outcomes.push(outcome);
      ruleTrace.actions.push(traced(action, outcome));
      if (outcome.status === "failed") trace.end = "failed";
      else if (action.type === "Stop") ruleTrace.stop = "Stop";
      else ruleTrace.stop = dispositionStop(action, outcome);
    }
    if (trace.end === "failed") break;
    if (ruleTrace.stop === "Stop" || ruleTrace.stop === "STOP_RULE_SET") {
      trace.end = "stopped";
      break;
    }
  }
  trace.prependedHeaders = prependedHeaders;
  return trace;
}
