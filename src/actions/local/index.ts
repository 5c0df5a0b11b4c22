import { join, resolve } from "node:path";
import { DEFAULTS } from "../../config/defaults.js";
import type { ActionBackend, SendDsnRequest } from "../backend.js";
import { LineAppender } from "./files.js";
import { hasLambdaHandler, lambdaInvoker } from "./lambda.js";
import { deliverToMailbox } from "./maildir.js";
import { putObject } from "./s3.js";
import { DELIVERY_RETRY_DELAYS_MS, LocalSns } from "./sns.js";
import type { BackgroundFailure } from "./sns.js";
import type { SignatureVersion } from "./sns-signing.js";

export type { LambdaContext } from "./lambda.js";
export type { BackgroundFailure } from "./sns.js";
export { LocalSns } from "./sns.js";
export type { SignatureVersion } from "./sns-signing.js";

export interface LocalBackendOptions {
  dataDir: string;
  /** SNS HTTP subscriptions: topic ARN (or "*") -> URLs to POST the standard SNS HTTP notification envelope to. */
  snsHttpSubscriptions?: Record<string, string[]>;
  /** Lambda handlers: function ARN (with or without qualifier) -> path of a JS/TS module exporting `handler(event, context)`; relative paths resolve against `baseDir`. */
  lambdaHandlers?: Record<string, string>;
  /** Defaults to the working directory. */
  baseDir?: string;
  /** How long a Lambda handler may run, for both invocation types (both are awaited). Default 30 s. */
  requestResponseTimeoutMs?: number;
  /** The outbox directory or an SMTP relay, chosen by config. */
  sendDsn: (request: SendDsnRequest) => Promise<Record<string, unknown>>;
  clock?: () => Date;
  /** How HTTP subscribers' envelopes are signed: "1" (RSA-SHA1, SNS's default) or "2" (RSA-SHA256). */
  snsSignatureVersion?: SignatureVersion;
  /**
   * The admin port's URL (`http://host:port`), which serves SigningCertURL and UnsubscribeURL;
   * null (the default) leaves those two empty.
   */
  snsPublicUrl?: () => string | null;
  /** Waits between retries of an SNS HTTP subscriber that failed transiently. */
  snsDeliveryRetryDelaysMs?: readonly number[];
  /**
   * Told of failures that cannot fail the action (a throwing Event handler, a subscriber that
   * stays down), as on SES; by default they are logged to stderr.
   */
  onBackgroundFailure?: (failure: BackgroundFailure) => void;
}

/**
 * The embedded back end: no AWS account, no network except configured SNS HTTP subscribers.
 * Everything lands under one data directory:
 *
 * - `s3/<bucket>/<key>`: objects, written atomically and durably;
 * - `sns/<topic name>.jsonl`: one line per notification ({topicArn, subject, message, messageId, timestamp});
 * - `sns/signing.pem`: the key and certificate that sign HTTP subscribers' envelopes;
 * - `sns/unsubscribed.json`: subscriptions removed through their UnsubscribeURL;
 * - `lambda/<function name>.jsonl`: one line per invocation ({functionArn, invocationType, event, result|error, timestamp});
 * - `workmail/<organization ID>/<address>/{tmp,new,cur}`: a Maildir per recipient.
 *
 * No name from a rule or a message can reach outside these directories.
 */
export function localBackend(options: LocalBackendOptions): ActionBackend & { sns: LocalSns } {
  const dataDir = resolve(options.dataDir);
  const clock = options.clock ?? (() => new Date());
  const lines = new LineAppender();
  const onBackgroundFailure =
    options.onBackgroundFailure ?? ((failure: BackgroundFailure) => console.error(`receiptd: ${failure.kind}: ${failure.message}`));
  const sns = new LocalSns({
    root: join(dataDir, "sns"),
    lines,
    subscriptions: options.snsHttpSubscriptions ?? {},
    clock,
    retryDelaysMs: options.snsDeliveryRetryDelaysMs ?? DELIVERY_RETRY_DELAYS_MS,
    onBackgroundFailure,
    signatureVersion: options.snsSignatureVersion ?? DEFAULTS.snsSignatureVersion,
    publicUrl: options.snsPublicUrl ?? (() => null),
  });
  const invoke = lambdaInvoker({
    root: join(dataDir, "lambda"),
    lines,
    handlers: options.lambdaHandlers ?? {},
    baseDir: resolve(options.baseDir ?? process.cwd()),
    timeoutMs: options.requestResponseTimeoutMs ?? DEFAULTS.requestResponseTimeoutMs,
    clock,
    onBackgroundFailure,
  });
  return {
    putObject: (request) => putObject(join(dataDir, "s3"), request),
    publish: (request) => sns.publish(request),
    invoke,
    sendDsn: (request) => options.sendDsn(request),
    deliverToMailbox: (request) => deliverToMailbox(join(dataDir, "workmail"), request, clock),
    // Buckets are directories made on first write and any topic can be published to; a function
    // exists when a handler is configured for it.
    targetExists: async (target) => (target.service === "Lambda" ? hasLambdaHandler(options.lambdaHandlers ?? {}, target.functionArn) : true),
    sns,
  };
}
