import { createHash, randomUUID } from "node:crypto";
import { ActionError } from "../backend.js";
import type { PublishRequest } from "../backend.js";
import type { LineAppender } from "./files.js";
import { resolveInside, topicName } from "./paths.js";

/** How long a subscriber has to answer (ours; a hung endpoint must not stall the message). */
const HTTP_DELIVERY_TIMEOUT_MS = 15_000;

export interface SnsContext {
  root: string;
  lines: LineAppender;
  subscriptions: Record<string, string[]>;
  clock: () => Date;
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

interface Delivery {
  url: string;
  status: number;
}

async function deliver(url: string, topicArn: string, messageId: string, body: string): Promise<Delivery> {
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
  if (response.status >= 200 && response.status < 300) return { url, status: response.status };
  // Like SNS, retry server-side failures (and throttling); anything else is the endpoint refusing.
  const transient = response.status >= 500 || response.status === 408 || response.status === 429;
  throw new ActionError(transient ? "transient" : "permanent", `SNS HTTP subscription ${url} answered ${response.status}`);
}

export async function publish(context: SnsContext, request: PublishRequest): Promise<Record<string, unknown>> {
  const name = topicName(request.topicArn);
  const file = resolveInside(context.root, [`${name}.jsonl`], "topic name", request.topicArn);
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
  const outcomes = await Promise.allSettled(urls.map((url) => deliver(url, request.topicArn, messageId, body)));
  const deliveries = outcomes.flatMap((outcome) => (outcome.status === "fulfilled" ? [outcome.value] : []));
  const failures = outcomes.flatMap((outcome) => (outcome.status === "rejected" ? [outcome.reason as ActionError] : []));
  if (failures.length > 0) {
    // A retry repeats every delivery, so it is only worth it when no subscriber refused outright.
    const failure = failures.some((error) => error.failure === "permanent") ? "permanent" : "transient";
    throw new ActionError(failure, failures.map((error) => error.message).join("; "), { cause: failures[0] });
  }
  return { MessageId: messageId, file, deliveries };
}
