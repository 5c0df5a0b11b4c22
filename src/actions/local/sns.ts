import { createHash, randomUUID } from "node:crypto";
import { ActionError } from "../backend.js";
import type { PublishRequest } from "../backend.js";
import type { LineAppender } from "./files.js";
import { resolveInside, topicName } from "./paths.js";

/** How long a subscriber has to answer (ours; a hung endpoint must not stall the message). */
const HTTP_DELIVERY_TIMEOUT_MS = 15_000;

/** Waits before each retry of a subscriber that failed transiently; SNS's HTTP policy also gives up after a few. */
export const DELIVERY_RETRY_DELAYS_MS = [1_000, 10_000, 20_000] as const;

/** A failure that happened after the action had succeeded, so that it can only be logged and counted. */
export interface BackgroundFailure {
  kind: "lambda-event" | "sns-delivery";
  /** The function ARN or subscriber URL. */
  target: string;
  message: string;
}

export interface SnsContext {
  root: string;
  lines: LineAppender;
  subscriptions: Record<string, string[]>;
  clock: () => Date;
  retryDelaysMs: readonly number[];
  onBackgroundFailure: (failure: BackgroundFailure) => void;
}

/**
 * The body SNS POSTs to an HTTP(S) subscriber (the "HTTP/HTTPS notification JSON format" of
 * the SNS developer guide), in SNS's key order. We hold no AWS signing key, so the message is
 * unsigned: Signature, SigningCertURL and UnsubscribeURL are empty strings, which any SNS
 * signature validator rejects (it requires an amazonaws.com certificate URL) rather than
 * accepting a forged signature. Subscribers used with this back end must skip verification.
 */
export function notificationEnvelope(fields: {
  messageId: string;
  topicArn: string;
  subject: string;
  message: string;
  timestamp: string;
}): Record<string, string> {
  return {
    Type: "Notification",
    MessageId: fields.messageId,
    TopicArn: fields.topicArn,
    // SNS leaves Subject out when the publisher gave none.
    ...(fields.subject === "" ? {} : { Subject: fields.subject }),
    Message: fields.message,
    Timestamp: fields.timestamp,
    SignatureVersion: "1",
    Signature: "",
    SigningCertURL: "",
    UnsubscribeURL: "",
  };
}

/** Subscription ARNs are `<topic ARN>:<UUID>`; ours is derived from the URL so it stays stable across restarts. */
function subscriptionArn(topicArn: string, url: string): string {
  const hex = createHash("sha256").update(`${topicArn}\n${url}`).digest("hex");
  return `${topicArn}:${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

async function deliver(url: string, topicArn: string, messageId: string, body: string): Promise<void> {
  let response: Response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: {
        "x-amz-sns-message-type": "Notification",
        "x-amz-sns-message-id": messageId,
        "x-amz-sns-topic-arn": topicArn,
        "x-amz-sns-subscription-arn": subscriptionArn(topicArn, url),
        "content-type": "text/plain; charset=UTF-8",
        "user-agent": "receiptd local SNS agent",
      },
      body,
      redirect: "manual",
      signal: AbortSignal.timeout(HTTP_DELIVERY_TIMEOUT_MS),
    });
  } catch (error) {
    throw new ActionError("transient", `SNS HTTP subscription ${url}: ${(error as Error).message}`, { cause: error });
  }
  // Drain the body so that the connection can be reused.
  await response.arrayBuffer().catch(() => undefined);
  if (response.status >= 200 && response.status < 300) return;
  // Like SNS, retry server-side failures (and throttling); anything else is the endpoint refusing.
  const transient = response.status >= 500 || response.status === 408 || response.status === 429;
  throw new ActionError(transient ? "transient" : "permanent", `SNS HTTP subscription ${url} answered ${response.status}`);
}

/** Most filesystems allow 255 bytes per name; SES allows topic names of 256 characters. */
const MAX_FILE_NAME_BYTES = 255;

/**
 * `<name>.jsonl`, or for a name too long for that, a prefix of it and a hash of the whole
 * (each line still carries the full topic ARN).
 */
export function topicFileName(name: string): string {
  const plain = `${name}.jsonl`;
  if (Buffer.byteLength(plain) <= MAX_FILE_NAME_BYTES) return plain;
  return `${name.slice(0, 200)}-${createHash("sha256").update(name).digest("hex").slice(0, 32)}.jsonl`;
}

export async function publish(context: SnsContext, request: PublishRequest): Promise<Record<string, unknown>> {
  const file = resolveInside(context.root, [topicFileName(topicName(request.topicArn))], "topic name", request.topicArn);
  const messageId = randomUUID();
  const timestamp = context.clock().toISOString();
  await context.lines.append(file, {
    topicArn: request.topicArn,
    subject: request.subject,
    message: request.message,
    messageId,
    timestamp,
  });

  const urls = [
    ...new Set([...(context.subscriptions[request.topicArn] ?? []), ...(context.subscriptions["*"] ?? [])]),
  ];
  const body = JSON.stringify(notificationEnvelope({ ...request, messageId, timestamp }));
  // A Publish succeeds whatever its subscribers do, so deliveries run on their own and never
  // hold (or repeat) the message's actions.
  for (const url of urls) void deliverWithRetries(context, url, request.topicArn, messageId, body);
  return { MessageId: messageId, file, subscribers: urls };
}

async function deliverWithRetries(context: SnsContext, url: string, topicArn: string, messageId: string, body: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await deliver(url, topicArn, messageId, body);
      return;
    } catch (error) {
      const failure = error as ActionError;
      const delay = context.retryDelaysMs[attempt];
      if (failure.failure === "permanent" || delay === undefined) {
        context.onBackgroundFailure({ kind: "sns-delivery", target: url, message: failure.message });
        return;
      }
      // Unref'd: a pending retry must not keep the process from exiting.
      await new Promise((resolve) => setTimeout(resolve, delay).unref());
    }
  }
}
