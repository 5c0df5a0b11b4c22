import type { ActionParamsByType, ActionType, Envelope, Header, Rule } from "./model.js";

/**
 * What an action back end is handed for one action of one matching rule. `M` is the back
 * end's own handle on the message bytes (a file, a buffer); the evaluator never reads it.
 */
export interface ActionCall<T extends ActionType, M> {
  type: T;
  params: ActionParamsByType[T];
  rule: Rule;
  ruleIndex: number;
  actionIndex: number;
  /** The envelope recipients this rule matched (SES `receipt.recipients`). */
  recipients: string[];
  envelope: Envelope;
  messageId: string;
  /**
   * Headers prepended to the original message so far, top first: the engine's own
   * (Return-Path, Received, ...) and every AddHeader done before this action. The message
   * this action sees is these lines followed by the original bytes of `message`.
   */
  prependedHeaders: readonly Header[];
  message: M;
}

export type ActionOutcome =
  | {
      status: "done";
      /** A RequestResponse Lambda's `disposition`, as the function returned it. */
      disposition?: string | null;
      /** What the back end did, for traces (object key, published message ID, file written...). */
      detail?: Record<string, unknown>;
    }
  | {
      status: "failed";
      /** docs/behaviour.md §8: transient failures are retried, permanent ones dead-letter the message. */
      failure: "transient" | "permanent";
      error: string;
    };

/** One method per action type; each returns when the action (and its topic notification) is done. */
export type ActionExecutor<M> = {
  [T in ActionType]: (call: ActionCall<T, M>) => Promise<ActionOutcome>;
};
