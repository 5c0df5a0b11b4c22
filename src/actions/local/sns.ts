import { createHash, randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { ActionError } from "../backend.js";
import type { PublishRequest } from "../backend.js";
import { replaceFile } from "./files.js";
import type { LineAppender } from "./files.js";
import { resolveInside, topicName } from "./paths.js";
import { loadSigningIdentity, signEnvelope } from "./sns-signing.js";
import type { SignatureVersion, SigningIdentity } from "./sns-signing.js";

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
  signatureVersion: SignatureVersion;
  /**
   * Where the admin port is reached (`http://host:port`), for SigningCertURL and
   * UnsubscribeURL; null when it is off.
   */
  publicUrl: () => string | null;
}

/**
 * The body SNS POSTs to an HTTP(S) subscriber (the "HTTP/HTTPS notification JSON format" of
 * the SNS developer guide), in SNS's key order, without its signature.
 */
export function notificationEnvelope(fields: {
  messageId: string;
  topicArn: string;
  subject: string;
  message: string;
  timestamp: string;
  signatureVersion: SignatureVersion;
}): Record<string, string> {
  return {
    Type: "Notification",
    MessageId: fields.messageId,
    TopicArn: fields.topicArn,
    // SNS leaves Subject out when the publisher gave none.
    ...(fields.subject === "" ? {} : { Subject: fields.subject }),
    Message: fields.message,
    Timestamp: fields.timestamp,
    SignatureVersion: fields.signatureVersion,
    Signature: "",
    SigningCertURL: "",
    UnsubscribeURL: "",
  };
}

/** Subscription ARNs are `<topic ARN>:<UUID>`; ours is derived from the URL so it stays stable across restarts. */
export function subscriptionArn(topicArn: string, url: string): string {
  const hex = createHash("sha256").update(`${topicArn}\n${url}`).digest("hex");
  return `${topicArn}:${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/** SNS's UnsubscribeURL is its query API's Unsubscribe action; ours is the admin port's copy of it. */
export function unsubscribeUrl(publicUrl: string, arn: string): string {
  return `${publicUrl}/sns/?Action=Unsubscribe&SubscriptionArn=${encodeURIComponent(arn)}`;
}

async function deliver(url: string, arn: string, envelope: Record<string, string>): Promise<void> {
  let response: Response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: {
        "x-amz-sns-message-type": "Notification",
        "x-amz-sns-message-id": envelope.MessageId ?? "",
        "x-amz-sns-topic-arn": envelope.TopicArn ?? "",
        "x-amz-sns-subscription-arn": arn,
        "content-type": "text/plain; charset=UTF-8",
        "user-agent": "receiptd local SNS agent",
      },
      body: JSON.stringify(envelope),
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

/** What `<dataDir>/sns/unsubscribed.json` keeps of each subscription removed through its UnsubscribeURL. */
interface Unsubscribed {
  SubscriptionArn: string;
  TopicArn: string;
  Endpoint: string;
  UnsubscribedAt: string;
}

/**
 * The local SNS: topics are JSON Lines files, subscriptions come from the configuration, and
 * HTTP subscribers get envelopes signed as SNS signs them (docs/behaviour.md §11). A
 * subscription removed through its UnsubscribeURL stays removed across restarts.
 */
export class LocalSns {
  private identity: Promise<SigningIdentity> | null = null;
  private unsubscribed: Promise<Map<string, Unsubscribed>> | null = null;
  /** Rewrites of unsubscribed.json, one at a time. */
  private saving: Promise<void> = Promise.resolve();

  constructor(private readonly context: SnsContext) {}

  /** Made (or read) on first use: a topic without subscribers never needs it. */
  signingIdentity(): Promise<SigningIdentity> {
    this.identity ??= loadSigningIdentity(this.context.root, this.context.clock);
    // A failure (say, a full disk) is not kept: the next delivery tries again.
    this.identity.catch(() => (this.identity = null));
    return this.identity;
  }

  async publish(request: PublishRequest): Promise<Record<string, unknown>> {
    const { context } = this;
    const file = resolveInside(context.root, [topicFileName(topicName(request.topicArn))], "topic name", request.topicArn);
    // Before the append: a retry after an unreadable unsubscribed.json must not store the line twice.
    const removed = await this.removedSubscriptions();
    const urls = this.configuredUrls(request.topicArn).filter((url) => !removed.has(subscriptionArn(request.topicArn, url)));
    const messageId = randomUUID();
    const timestamp = context.clock().toISOString();
    await context.lines.append(file, {
      topicArn: request.topicArn,
      subject: request.subject,
      message: request.message,
      messageId,
      timestamp,
    });

    if (urls.length > 0) {
      const envelope = notificationEnvelope({ ...request, messageId, timestamp, signatureVersion: context.signatureVersion });
      // A Publish succeeds whatever its subscribers do, so deliveries run on their own and never
      // hold (or repeat) the message's actions.
      void this.signed(envelope).then(
        (signed) => {
          for (const url of urls) void this.deliverWithRetries(url, signed);
        },
        (error: unknown) => {
          for (const url of urls) context.onBackgroundFailure({ kind: "sns-delivery", target: url, message: `cannot sign: ${(error as Error).message}` });
        },
      );
    }
    return { MessageId: messageId, file, subscribers: urls };
  }

  /**
   * Removes the subscription, as SNS's Unsubscribe does: "unsubscribed" (also when it already
   * was), or "unknown" when no configured subscription has that ARN.
   */
  async unsubscribe(arn: string): Promise<"unsubscribed" | "unknown"> {
    const topicArn = arn.slice(0, Math.max(0, arn.lastIndexOf(":")));
    const endpoint = this.configuredUrls(topicArn).find((url) => subscriptionArn(topicArn, url) === arn);
    if (endpoint === undefined) return "unknown";
    const removed = await this.removedSubscriptions();
    if (removed.has(arn)) return "unsubscribed";
    removed.set(arn, { SubscriptionArn: arn, TopicArn: topicArn, Endpoint: endpoint, UnsubscribedAt: this.context.clock().toISOString() });
    const text = `${JSON.stringify([...removed.values()], null, 2)}\n`;
    const save = this.saving.then(() => replaceFile(this.unsubscribedFile(), Readable.from([Buffer.from(text)]), Buffer.byteLength(text)));
    this.saving = save.then(
      () => undefined,
      () => undefined,
    );
    try {
      await save;
    } catch (error) {
      // Not kept, not done: the subscriber may ask again.
      removed.delete(arn);
      throw error;
    }
    return "unsubscribed";
  }

  private configuredUrls(topicArn: string): string[] {
    const { subscriptions } = this.context;
    return [...new Set([...(subscriptions[topicArn] ?? []), ...(subscriptions["*"] ?? [])])];
  }

  private unsubscribedFile(): string {
    // Topic files all end in .jsonl, so this name is never a topic's.
    return join(this.context.root, "unsubscribed.json");
  }

  private removedSubscriptions(): Promise<Map<string, Unsubscribed>> {
    if (Object.keys(this.context.subscriptions).length === 0) return Promise.resolve(new Map());
    const file = this.unsubscribedFile();
    this.unsubscribed ??= readFile(file, "utf8").then(
      (text) => {
        let entries: Unsubscribed[];
        try {
          entries = JSON.parse(text) as Unsubscribed[];
        } catch (error) {
          throw new Error(`${file}: ${(error as Error).message}`, { cause: error });
        }
        return new Map(entries.map((entry) => [entry.SubscriptionArn, entry]));
      },
      (error: NodeJS.ErrnoException) => {
        if (error.code === "ENOENT") return new Map<string, Unsubscribed>();
        throw error;
      },
    );
    this.unsubscribed.catch(() => (this.unsubscribed = null));
    return this.unsubscribed;
  }

  private async signed(envelope: Record<string, string>): Promise<Record<string, string>> {
    const identity = await this.signingIdentity();
    const publicUrl = this.context.publicUrl();
    return {
      ...envelope,
      Signature: signEnvelope(envelope, this.context.signatureVersion, identity.privateKey),
      // With the admin port off there is nowhere to fetch these from; the envelope is still signed.
      SigningCertURL: publicUrl === null ? "" : `${publicUrl}/sns/${identity.certificateName}`,
    };
  }

  private async deliverWithRetries(url: string, signed: Record<string, string>): Promise<void> {
    const { context } = this;
    const arn = subscriptionArn(signed.TopicArn ?? "", url);
    const publicUrl = context.publicUrl();
    // UnsubscribeURL is not signed, so one signature serves every subscriber.
    const envelope = { ...signed, UnsubscribeURL: publicUrl === null ? "" : unsubscribeUrl(publicUrl, arn) };
    for (let attempt = 0; ; attempt++) {
      try {
        await deliver(url, arn, envelope);
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
}
