import type { ActionCall, ActionExecutor, ActionOutcome } from "../rules/executor.js";
import type { ActionParamsByType, ActionType, Header } from "../rules/model.js";
import { sizeLimitError } from "../ses/limits.js";
import { connectUnsupported } from "./ses-executor.js";

export interface RecordedCall {
  type: ActionType;
  params: ActionParamsByType[ActionType];
  rule: string;
  recipients: string[];
  messageId: string;
  /** The headers prepended when this action ran, top first. */
  prependedHeaders: readonly Header[];
}

export interface RecordingOptions<M> {
  /** Disposition a RequestResponse Lambda "returns", by function ARN; absent means none (CONTINUE). */
  lambdaResults?: ReadonlyMap<string, string> | Record<string, string>;
  /** Size of the original message, so that strict mode can apply SES's action limits. */
  sizeOf?: (message: M) => number;
  /** SES's size limits per action; on unless turned off. */
  strict?: boolean;
}

export interface RecordingExecutor<M> extends ActionExecutor<M> {
  readonly calls: RecordedCall[];
}

function headerBytes(headers: readonly Header[]): number {
  let total = 0;
  for (const { name, value } of headers) total += Buffer.byteLength(name) + Buffer.byteLength(value) + 4;
  return total;
}

/**
 * Runs nothing: records every call and answers with what the action would do. The default
 * executor of replay and of the testing library.
 */
export function recordingExecutor<M>(options: RecordingOptions<M> = {}): RecordingExecutor<M> {
  const calls: RecordedCall[] = [];
  const lambdaResults =
    options.lambdaResults instanceof Map ? options.lambdaResults : new Map(Object.entries(options.lambdaResults ?? {}));
  const strict = options.strict ?? true;

  const messageSize = (call: ActionCall<ActionType, M>): number | undefined =>
    options.sizeOf ? options.sizeOf(call.message) + headerBytes(call.prependedHeaders) : undefined;

  const overLimit = (call: ActionCall<ActionType, M>): ActionOutcome | null => {
    const size = messageSize(call);
    const error = strict && size !== undefined ? sizeLimitError(call.type, size) : null;
    return error ? { status: "failed", failure: "permanent", error } : null;
  };

  const record = <T extends ActionType>(
    call: ActionCall<T, M>,
    detail: Record<string, unknown>,
    extra: { disposition?: string | null } = {},
  ): ActionOutcome => {
    calls.push({
      type: call.type,
      params: call.params,
      rule: call.rule.name,
      recipients: call.recipients,
      messageId: call.messageId,
      prependedHeaders: call.prependedHeaders,
    });
    const topicArn = (call.params as { TopicArn?: string }).TopicArn;
    const withTopic = topicArn && call.type !== "SNS" ? { ...detail, notification: { topicArn } } : detail;
    return { status: "done", detail: withTopic, ...extra };
  };

  return {
    calls,
    async S3(call) {
      const size = messageSize(call);
      return (
        overLimit(call) ??
        record(call, {
          bucket: call.params.BucketName,
          objectKey: `${call.params.ObjectKeyPrefix ?? ""}${call.messageId}`,
          ...(size === undefined ? {} : { bytes: size }),
        })
      );
    },
    async SNS(call) {
      return (
        overLimit(call) ??
        record(call, { topicArn: call.params.TopicArn, encoding: call.params.Encoding ?? "UTF-8" })
      );
    },
    async Lambda(call) {
      const functionArn = call.params.FunctionArn ?? "";
      const invocationType = call.params.InvocationType ?? "Event";
      const detail = { functionArn, invocationType };
      if (invocationType !== "RequestResponse") return record(call, detail);
      return record(call, detail, { disposition: lambdaResults.get(functionArn) ?? null });
    },
    async Bounce(call) {
      // No DSN ever goes to the null sender (docs/behaviour.md §3).
      const to = call.envelope.mailFrom === "" ? null : call.envelope.mailFrom;
      return record(call, {
        dsnTo: to,
        reply: `${call.params.SmtpReplyCode} ${call.params.StatusCode ?? ""}`.trim(),
        from: call.params.Sender,
      });
    },
    async AddHeader(call) {
      return record(call, { header: `${call.params.HeaderName}: ${call.params.HeaderValue}` });
    },
    async Stop(call) {
      return record(call, {});
    },
    async WorkMail(call) {
      return record(call, { organizationArn: call.params.OrganizationArn });
    },
    // What the daemon would do with it: fail for good, so replay shows the message dead-lettered.
    async Connect(call) {
      return { status: "failed", failure: "permanent", error: connectUnsupported(call.params) };
    },
  };
}
