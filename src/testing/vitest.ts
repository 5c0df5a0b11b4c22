import { expect } from "vitest";
import type { ActionParamsByType, ActionType } from "../rules/model.js";
import { matchedRules, stoppedAt } from "./index.js";
import type { Evaluation } from "./index.js";

/**
 * Vitest matchers over an `Evaluation` (from `evaluateMessage`). Importing this module
 * registers them: `import "receiptd/testing/vitest"` in a test file or a setup file.
 */
export interface ReceiptdMatchers<R = unknown> {
  /** The rule matched (its actions ran, or were reached). */
  toMatchRule(name: string): R;
  /** Exactly these rules matched, in this order. */
  toMatchRules(names: string[]): R;
  /** An action of this type ran (outcome done) whose parameters include `params`; optionally in one rule. */
  toRunAction<T extends ActionType>(type: T, params?: Partial<ActionParamsByType[T]>, options?: { rule?: string }): R;
  toAcceptRecipient(recipient: string): R;
  /** The recipient was refused at RCPT TO, optionally with this reply (exact string, or a pattern). */
  toRefuseRecipient(recipient: string, reply?: string | RegExp): R;
  /** Evaluation ended in this rule, by a Stop action or STOP_RULE_SET; optionally with that reason. */
  toStopAt(rule: string, reason?: "Stop" | "STOP_RULE_SET"): R;
}

declare module "vitest" {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any, @typescript-eslint/no-empty-object-type
  interface Matchers<T = any> extends ReceiptdMatchers<T> {}
}

const sameAddress = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

function describeActions(evaluation: Evaluation): string {
  const lines = (evaluation.trace?.rules ?? []).flatMap((rule) =>
    rule.actions.map((action) => `  ${rule.name}: ${action.type} ${action.outcome} ${JSON.stringify(action.params)}`),
  );
  return lines.length ? lines.join("\n") : "  (no actions)";
}

expect.extend({
  toMatchRule(received: Evaluation, name: string) {
    const rules = matchedRules(received);
    return {
      pass: rules.includes(name),
      message: () => `expected rule "${name}" ${this.isNot ? "not " : ""}to match; matched: ${JSON.stringify(rules)}`,
    };
  },

  toMatchRules(received: Evaluation, names: string[]) {
    const rules = matchedRules(received);
    return {
      pass: this.equals(rules, names),
      message: () => `expected matched rules ${this.isNot ? "not " : ""}to be ${JSON.stringify(names)}; matched: ${JSON.stringify(rules)}`,
      actual: rules,
      expected: names,
    };
  },

  toRunAction(received: Evaluation, type: ActionType, params: Record<string, unknown> = {}, options: { rule?: string } = {}) {
    const found = (received.trace?.rules ?? [])
      .filter((rule) => options.rule === undefined || rule.name === options.rule)
      .some((rule) =>
        rule.actions.some(
          (action) =>
            action.type === type && action.outcome === "done" && this.equals(action.params, expect.objectContaining(params)),
        ),
      );
    const where = options.rule === undefined ? "" : ` in rule "${options.rule}"`;
    return {
      pass: found,
      message: () =>
        `expected ${this.isNot ? "no " : "a "}${type} action with ${JSON.stringify(params)} to run${where}; actions:\n${describeActions(received)}`,
    };
  },

  toAcceptRecipient(received: Evaluation, recipient: string) {
    const refusal = received.refused.find((r) => sameAddress(r.recipient, recipient));
    return {
      pass: received.accepted.some((a) => sameAddress(a, recipient)),
      message: () =>
        this.isNot
          ? `expected ${recipient} to be refused, but it was accepted`
          : `expected ${recipient} to be accepted, but ${refusal ? `it was refused: ${refusal.reply}` : "it was not in the envelope"}`,
    };
  },

  toRefuseRecipient(received: Evaluation, recipient: string, reply?: string | RegExp) {
    const refusal = received.refused.find((r) => sameAddress(r.recipient, recipient));
    const replyMatches =
      refusal !== undefined && (reply === undefined || (typeof reply === "string" ? refusal.reply === reply : reply.test(refusal.reply)));
    const wanted = reply === undefined ? "" : ` with ${String(reply)}`;
    return {
      pass: replyMatches,
      message: () =>
        `expected ${recipient} ${this.isNot ? "not " : ""}to be refused${wanted}; ` +
        (refusal ? `it was refused: ${refusal.reply}` : "it was accepted or not in the envelope"),
    };
  },

  toStopAt(received: Evaluation, rule: string, reason?: "Stop" | "STOP_RULE_SET") {
    const stop = stoppedAt(received);
    return {
      pass: stop !== null && stop.rule === rule && (reason === undefined || stop.reason === reason),
      message: () =>
        `expected evaluation ${this.isNot ? "not " : ""}to stop at "${rule}"${reason ? ` by ${reason}` : ""}; ` +
        (stop ? `it stopped at "${stop.rule}" by ${stop.reason}` : "it ran to the end"),
    };
  },
});
