import { commonHeaders, destinationAddresses } from "../mail/index.js";
import type { CommonHeaders } from "../mail/index.js";
import type { Header, RuleAction } from "../rules/model.js";
import type { VerdictStatus, Verdicts } from "./verdicts.js";

/*
 * The JSON that SES email receiving publishes to SNS and passes to Lambda. Users' functions and
 * subscribers parse it, and some compare it as text, so every object is built literally in SES's
 * key order: that of the guide's examples (receiving-email-action-lambda-event) and of live
 * notifications, which put mail before receipt where the guide's 2015 examples do not.
 */

/** The SNS Subject of every receipt notification. */
export const NOTIFICATION_SUBJECT = "Amazon SES Email Receipt Notification";

/** Beyond this, SES cuts `mail.headers` and sets `headersTruncated`. */
export const HEADERS_LIMIT_BYTES = 10 * 1024;

export interface SesMail {
  timestamp: string;
  source: string;
  messageId: string;
  destination: string[];
  headersTruncated: boolean;
  headers: Header[];
  commonHeaders: CommonHeaders;
}

export interface SesVerdict {
  status: VerdictStatus;
}

/** `receipt.action.encoding` of the SNS action, for the rule's `UTF-8` and `Base64`. */
export type SesContentEncoding = "UTF8" | "BASE64";

export interface SesS3ReceiptAction {
  type: "S3";
  topicArn?: string;
  bucketName: string;
  /** Not in the documented table, but in every notification SES sends: "" when the rule has none. */
  objectKeyPrefix: string;
  objectKey: string;
}

export interface SesSnsReceiptAction {
  type: "SNS";
  topicArn: string;
  encoding: SesContentEncoding;
}

export interface SesBounceReceiptAction {
  type: "Bounce";
  topicArn?: string;
  smtpReplyCode: string;
  statusCode?: string;
  message: string;
  sender: string;
}

export interface SesLambdaReceiptAction {
  type: "Lambda";
  topicArn?: string;
  functionArn: string;
  invocationType: "Event" | "RequestResponse";
}

export interface SesStopReceiptAction {
  type: "Stop";
  topicArn?: string;
}

export interface SesWorkMailReceiptAction {
  type: "WorkMail";
  topicArn?: string;
  organizationArn: string;
}

/**
 * AddHeader has no topic, so SES never reports it; the type alone keeps the mapping total for
 * every rule action.
 */
export interface SesAddHeaderReceiptAction {
  type: "AddHeader";
}

/**
 * Connect has no topic either, and SES documents no `receipt.action` for it; receiptd cannot
 * run it (docs/behaviour.md §8), so this too only keeps the mapping total.
 */
export interface SesConnectReceiptAction {
  type: "Connect";
}

export type SesReceiptAction =
  | SesS3ReceiptAction
  | SesSnsReceiptAction
  | SesBounceReceiptAction
  | SesLambdaReceiptAction
  | SesStopReceiptAction
  | SesWorkMailReceiptAction
  | SesAddHeaderReceiptAction
  | SesConnectReceiptAction;

export interface SesReceipt {
  timestamp: string;
  processingTimeMillis: number;
  recipients: string[];
  spamVerdict: SesVerdict;
  virusVerdict: SesVerdict;
  spfVerdict: SesVerdict;
  dkimVerdict: SesVerdict;
  dmarcVerdict: SesVerdict;
  /** Only when DMARC fails. */
  dmarcPolicy?: "none" | "quarantine" | "reject";
  action: SesReceiptAction;
}

export interface SesLambdaEvent {
  Records: [{ eventSource: "aws:ses"; eventVersion: "1.0"; ses: { mail: SesMail; receipt: SesReceipt } }];
}

/**
 * `mail`. `headers` is the whole header list as the action sees it (prepended headers first);
 * `destination` and `commonHeaders` come from all of it, even when `headers` is cut.
 */
export function sesMail(input: {
  timestamp: Date;
  source: string;
  messageId: string;
  headers: readonly Header[];
}): SesMail {
  const headers: Header[] = [];
  let bytes = 0;
  let headersTruncated = false;
  for (const { name, value } of input.headers) {
    // Truncated when the headers as "name: value\r\n" lines exceed 10 KB; whole headers are kept up to the limit.
    bytes += Buffer.byteLength(name) + Buffer.byteLength(value) + 4;
    if (bytes > HEADERS_LIMIT_BYTES) {
      headersTruncated = true;
      break;
    }
    headers.push({ name, value });
  }
  return {
    timestamp: input.timestamp.toISOString(),
    source: input.source,
    messageId: input.messageId,
    destination: destinationAddresses(input.headers),
    headersTruncated,
    headers,
    commonHeaders: commonHeaders(input.headers),
  };
}

/**
 * Validation guarantees required parameters, but a rule built in code may lack one, and an event
 * silently missing the field would be worse than an error.
 */
function required(value: string | undefined, what: string): string {
  if (value === undefined) throw new TypeError(`SES receipt action: ${what} is missing`);
  return value;
}

/** Spread right after `type`, where SES puts the topic of every action that has one. */
function topic(topicArn: string | undefined): { topicArn?: string } {
  return topicArn === undefined ? {} : { topicArn };
}

function contentEncoding(encoding: "UTF-8" | "Base64" | undefined): SesContentEncoding {
  return encoding === "Base64" ? "BASE64" : "UTF8";
}

/**
 * `receipt.action`: the rule's action parameters as SES reports them. `extra.objectKey` is where
 * the S3 action stored the message; `extra.encoding` overrides the SNS action's own.
 */
export function sesReceiptAction(
  action: RuleAction,
  extra: { objectKey?: string; encoding?: SesContentEncoding },
): SesReceiptAction {
  switch (action.type) {
    case "S3": {
      const p = action.params;
      return {
        type: "S3",
        ...topic(p.TopicArn),
        bucketName: required(p.BucketName, "S3Action.BucketName"),
        objectKeyPrefix: p.ObjectKeyPrefix ?? "",
        objectKey: required(extra.objectKey, "the S3 object key"),
      };
    }
    case "SNS": {
      const p = action.params;
      return {
        type: "SNS",
        topicArn: required(p.TopicArn, "SNSAction.TopicArn"),
        encoding: extra.encoding ?? contentEncoding(p.Encoding),
      };
    }
    case "Bounce": {
      const p = action.params;
      return {
        type: "Bounce",
        ...topic(p.TopicArn),
        smtpReplyCode: required(p.SmtpReplyCode, "BounceAction.SmtpReplyCode"),
        ...(p.StatusCode === undefined ? {} : { statusCode: p.StatusCode }),
        message: required(p.Message, "BounceAction.Message"),
        sender: required(p.Sender, "BounceAction.Sender"),
      };
    }
    case "Lambda": {
      const p = action.params;
      return {
        type: "Lambda",
        ...topic(p.TopicArn),
        functionArn: required(p.FunctionArn, "LambdaAction.FunctionArn"),
        // SES reports the invocation type even when the rule leaves it to the default.
        invocationType: p.InvocationType ?? "Event",
      };
    }
    case "Stop":
      return { type: "Stop", ...topic(action.params.TopicArn) };
    case "WorkMail": {
      const p = action.params;
      return {
        type: "WorkMail",
        ...topic(p.TopicArn),
        organizationArn: required(p.OrganizationArn, "WorkmailAction.OrganizationArn"),
      };
    }
    case "AddHeader":
      return { type: "AddHeader" };
    case "Connect":
      return { type: "Connect" };
  }
}

/** `receipt`. */
export function sesReceipt(input: {
  timestamp: Date;
  processingTimeMillis: number;
  recipients: string[];
  verdicts: Verdicts;
  action: SesReceiptAction;
}): SesReceipt {
  const { verdicts } = input;
  return {
    timestamp: input.timestamp.toISOString(),
    // SES reports whole milliseconds; a measured duration may carry a fraction.
    processingTimeMillis: Math.round(input.processingTimeMillis),
    recipients: [...input.recipients],
    spamVerdict: { status: verdicts.spam },
    virusVerdict: { status: verdicts.virus },
    spfVerdict: { status: verdicts.spf },
    dkimVerdict: { status: verdicts.dkim },
    dmarcVerdict: { status: verdicts.dmarc },
    ...(verdicts.dmarcPolicy === undefined ? {} : { dmarcPolicy: verdicts.dmarcPolicy }),
    action: input.action,
  };
}

/** The SNS Message SES publishes; `content` only for the SNS action. */
export function receivedNotification(mail: SesMail, receipt: SesReceipt, content?: string): string {
  return JSON.stringify({
    notificationType: "Received",
    mail,
    receipt,
    ...(content === undefined ? {} : { content }),
  });
}

/** The Lambda action's event: no content, the function reads the message elsewhere (e.g. from S3). */
export function lambdaEvent(mail: SesMail, receipt: SesReceipt): SesLambdaEvent {
  return { Records: [{ eventSource: "aws:ses", eventVersion: "1.0", ses: { mail, receipt } }] };
}

/**
 * The SNS action's `content` and `receipt.action.encoding`. UTF-8 (the default) decodes the raw
 * message as UTF-8, so bytes of other charsets become U+FFFD, as SES warns; Base64 keeps every byte.
 */
export function snsContent(
  message: Buffer,
  encoding: "UTF-8" | "Base64" | undefined,
): { content: string; encoding: SesContentEncoding } {
  const ses = contentEncoding(encoding);
  return { content: message.toString(ses === "BASE64" ? "base64" : "utf8"), encoding: ses };
}
