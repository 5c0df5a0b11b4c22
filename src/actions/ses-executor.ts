import { randomBytes } from "node:crypto";
import { buildDsn } from "../mail/dsn.js";
import { prependHeadersStream, prependedHeaderBytes } from "../mail/edit.js";
import type { ActionCall, ActionExecutor, ActionOutcome } from "../rules/executor.js";
import type { ActionParamsByType, ActionType } from "../rules/model.js";
import {
  NOTIFICATION_SUBJECT,
  lambdaEvent,
  receivedNotification,
  sesMail,
  sesReceipt,
  sesReceiptAction,
  snsContent,
} from "../ses/events.js";
import type { SesMail, SesReceipt } from "../ses/events.js";
import { sizeLimitError } from "../ses/limits.js";
import { ActionError } from "./backend.js";
import type { ActionBackend } from "./backend.js";
import type { ReceivedMessage } from "./message.js";

export interface SesExecutorOptions {
  backend: ActionBackend;
  /** Our host name: the DSN's Reporting-MTA and Message-ID domain. */
  hostname: string;
  /** SES's per-action size limits; on unless turned off. */
  strict?: boolean;
  clock?: () => Date;
  /** Randomness for the Message-IDs of DSNs. */
  random?: (bytes: number) => Uint8Array;
  /** Why no DSN may leave now (the account's sending is paused), or null; asked at each Bounce action. */
  dsnHeld?: () => string | null;
}

type Call<T extends ActionType> = ActionCall<T, ReceivedMessage>;

/**
 * Why a ConnectAction fails: SES hands the message to Amazon Connect, which receiptd has no back
 * end for. Permanent, since no retry changes that (docs/behaviour.md §8).
 */
export function connectUnsupported(params: ActionParamsByType["Connect"]): string {
  return (
    "ConnectAction is not supported by receiptd: it has no Amazon Connect back end, " +
    `so no email contact can be started in ${String(params.InstanceARN)}`
  );
}

/** Size of the message as this action sees it: every header prepended so far, then the stored bytes. */
function currentSize(call: Call<ActionType>): number {
  return prependedHeaderBytes(call.prependedHeaders).length + call.message.size;
}

/** The message as this action sees it, opened only once the action is sure to send it. */
function currentBody(call: Call<ActionType>): AsyncIterable<Buffer> {
  return prependHeadersStream(call.prependedHeaders, call.message.open());
}

async function readAll(body: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk);
  return Buffer.concat(chunks);
}

function failure(error: unknown): ActionOutcome {
  if (error instanceof ActionError) return { status: "failed", failure: error.failure, error: error.message };
  // Anything unclassified is retried: giving up is for failures known to be final.
  return { status: "failed", failure: "transient", error: error instanceof Error ? error.message : String(error) };
}

/**
 * Runs actions as SES does, on any back end: the events, object keys, size limits, topic
 * notifications and DSNs are made here once, so every back end publishes the same JSON.
 */
export function sesExecutor(options: SesExecutorOptions): ActionExecutor<ReceivedMessage> {
  const { backend, hostname } = options;
  const strict = options.strict ?? true;
  const clock = options.clock ?? (() => new Date());
  const random = options.random ?? randomBytes;

  const mailOf = (call: Call<ActionType>): SesMail =>
    sesMail({
      timestamp: call.message.receivedAt,
      source: call.envelope.mailFrom,
      messageId: call.messageId,
      headers: [...call.prependedHeaders, ...call.message.headers],
    });

  const receiptOf = (call: Call<ActionType>, extra: Parameters<typeof sesReceiptAction>[1] = {}): SesReceipt =>
    sesReceipt({
      timestamp: call.message.receivedAt,
      processingTimeMillis: Math.max(0, clock().getTime() - call.message.receivedAt.getTime()),
      recipients: call.recipients,
      verdicts: call.message.verdicts,
      action: sesReceiptAction({ type: call.type, params: call.params } as never, extra),
    });

  /** The Received notification an action with a TopicArn publishes once it is done. */
  const notify = async (call: Call<ActionType>, extra: Parameters<typeof sesReceiptAction>[1] = {}) => {
    const topicArn = (call.params as { TopicArn?: string }).TopicArn;
    if (!topicArn) return {};
    const published = await backend.publish({
      topicArn,
      subject: NOTIFICATION_SUBJECT,
      message: receivedNotification(mailOf(call), receiptOf(call, extra)),
    });
    return { notification: { topicArn, ...published } };
  };

  const checkSize = (call: Call<ActionType>, contentLength: number) => {
    const error = strict ? sizeLimitError(call.type, contentLength) : null;
    if (error) throw new ActionError("permanent", error);
  };

  const run =
    <T extends ActionType>(perform: (call: Call<T>) => Promise<ActionOutcome>) =>
    async (call: Call<T>): Promise<ActionOutcome> => {
      try {
        return await perform(call);
      } catch (error) {
        return failure(error);
      }
    };

  return {
    S3: run(async (call) => {
      const contentLength = currentSize(call);
      checkSize(call, contentLength);
      const objectKey = `${call.params.ObjectKeyPrefix ?? ""}${call.messageId}`;
      const stored = await backend.putObject({
        bucket: call.params.BucketName!,
        key: objectKey,
        body: currentBody(call),
        contentLength,
        ...(call.params.KmsKeyArn ? { kmsKeyArn: call.params.KmsKeyArn } : {}),
      });
      return {
        status: "done",
        detail: { bucket: call.params.BucketName, objectKey, ...stored, ...(await notify(call, { objectKey })) },
      };
    }),

    SNS: run(async (call) => {
      checkSize(call, currentSize(call));
      const { content, encoding } = snsContent(await readAll(currentBody(call)), call.params.Encoding);
      const published = await backend.publish({
        topicArn: call.params.TopicArn!,
        subject: NOTIFICATION_SUBJECT,
        message: receivedNotification(mailOf(call), receiptOf(call, { encoding }), content),
      });
      return { status: "done", detail: { topicArn: call.params.TopicArn, encoding, ...published } };
    }),

    Lambda: run(async (call) => {
      const invocationType = call.params.InvocationType ?? "Event";
      const { result, detail } = await backend.invoke({
        functionArn: call.params.FunctionArn!,
        invocationType,
        payload: JSON.stringify(lambdaEvent(mailOf(call), receiptOf(call))),
      });
      const disposition =
        invocationType === "RequestResponse" && result !== null && typeof result === "object"
          ? ((result as { disposition?: unknown }).disposition ?? null)
          : null;
      return {
        status: "done",
        disposition: typeof disposition === "string" ? disposition : null,
        detail: { functionArn: call.params.FunctionArn, invocationType, ...detail, ...(await notify(call)) },
      };
    }),

    Bounce: run(async (call) => {
      const to = call.envelope.mailFrom;
      const held = options.dsnHeld?.() ?? null;
      // No DSN ever goes to the null sender (docs/behaviour.md §3): that is how bounce loops start.
      // A held DSN is not sent later either: the action is done, and its trace says why nothing left.
      const sent =
        to === ""
          ? { dsn: "not sent: null sender" }
          : held !== null
            ? { dsn: `not sent: ${held}` }
            : await backend.sendDsn({
              to,
              raw: buildDsn({
                reportingMta: hostname,
                arrivalDate: call.message.receivedAt,
                date: clock(),
                messageId: `<${Buffer.from(random(16)).toString("hex")}@${hostname}>`,
                from: call.params.Sender!,
                to,
                recipients: call.recipients,
                smtpReplyCode: call.params.SmtpReplyCode!,
                ...(call.params.StatusCode ? { statusCode: call.params.StatusCode } : {}),
                message: call.params.Message!,
                originalHeaders: Buffer.concat([prependedHeaderBytes(call.prependedHeaders), call.message.headerBlock]),
                ...originalMessageId(call),
              }),
            });
      return { status: "done", detail: { dsnTo: to === "" ? null : to, ...sent, ...(await notify(call)) } };
    }),

    WorkMail: run(async (call) => {
      const delivered = await backend.deliverToMailbox({
        organizationArn: call.params.OrganizationArn!,
        mailFrom: call.envelope.mailFrom,
        recipients: call.recipients,
        body: currentBody(call),
        contentLength: currentSize(call),
      });
      return { status: "done", detail: { ...delivered, ...(await notify(call)) } };
    }),

    // The header itself was prepended by the evaluator; what is left is the notification.
    AddHeader: run(async (call) => ({ status: "done", detail: await notify(call) })),

    Stop: run(async (call) => ({ status: "done", detail: await notify(call) })),

    Connect: async (call) => ({ status: "failed", failure: "permanent", error: connectUnsupported(call.params) }),
  };
}

function originalMessageId(call: Call<ActionType>): { originalMessageId?: string } {
  const header = call.message.headers.find((h) => h.name.toLowerCase() === "message-id");
  return header ? { originalMessageId: header.value.trim() } : {};
}
