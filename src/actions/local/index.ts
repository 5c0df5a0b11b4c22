import { join, resolve } from "node:path";
import type { ActionBackend, SendDsnRequest } from "../backend.js";
import { LineAppender } from "./files.js";
import { lambdaInvoker } from "./lambda.js";
import { deliverToMailbox } from "./maildir.js";
import { putObject } from "./s3.js";
import { publish } from "./sns.js";

export type { LambdaContext } from "./lambda.js";

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
}

/**
 * The embedded back end: no AWS account, no network except configured SNS HTTP subscribers.
 * Everything lands under one data directory:
 *
 * - `s3/<bucket>/<key>`: objects, written atomically and durably;
 * - `sns/<topic name>.jsonl`: one line per notification ({topicArn, subject, message, messageId, timestamp});
 * - `lambda/<function name>.jsonl`: one line per invocation ({functionArn, invocationType, event, result|error, timestamp});
 * - `workmail/<organization ID>/<address>/{tmp,new,cur}`: a Maildir per recipient.
 *
 * No name from a rule or a message can reach outside these directories.
 */
export function localBackend(options: LocalBackendOptions): ActionBackend {
  const dataDir = resolve(options.dataDir);
  const clock = options.clock ?? (() => new Date());
  const lines = new LineAppender();
  const sns = { root: join(dataDir, "sns"), lines, subscriptions: options.snsHttpSubscriptions ?? {}, clock };
  const invoke = lambdaInvoker({
    root: join(dataDir, "lambda"),
    lines,
    handlers: options.lambdaHandlers ?? {},
    baseDir: resolve(options.baseDir ?? process.cwd()),
    timeoutMs: options.requestResponseTimeoutMs ?? 30_000,
    clock,
  });
  return {
    putObject: (request) => putObject(join(dataDir, "s3"), request),
    publish: (request) => publish(sns, request),
    invoke,
    sendDsn: (request) => options.sendDsn(request),
    deliverToMailbox: (request) => deliverToMailbox(join(dataDir, "workmail"), request, clock),
  };
}
