import { createHash } from "node:crypto";
import { isUtf8 } from "node:buffer";
import * as base64 from "nodemailer/lib/base64";
import * as mimeFuncs from "nodemailer/lib/mime-funcs";
import MimeNode from "nodemailer/lib/mime-node";
import * as qp from "nodemailer/lib/qp";

/** What every DSN has, whatever decided its per-recipient fields. */
interface DsnCommon {
  /** The original message's arrival, for `Arrival-Date`; absent: the field is left out. */
  arrivalDate?: Date;
  /** The DSN's own Date. */
  date: Date;
  /** The DSN's own Message-ID value, e.g. `<...@host>`. */
  messageId: string;
  /** The Bounce action's Sender, or SendBounce's BounceSender. */
  from: string;
  /** The original envelope sender; never empty, no DSN goes to the null sender. */
  to: string;
  /** Human-readable text: the action's Message, or SendBounce's Explanation. */
  message: string;
  /** The original header block as received, prepended headers included. */
  originalHeaders: Buffer;
  /** The original Message-ID value, for In-Reply-To and References. */
  originalMessageId?: string;
}

/** One RFC 3464 extension field (`X-Name: value`), SendBounce's `ExtensionFields`. */
export interface DsnField {
  name: string;
  value: string;
}

/** A per-recipient block of RFC 3464 section 2.3, each value as it goes after the field name. */
export interface DsnRecipient {
  /** The address for `Final-Recipient`. */
  recipient: string;
  action: "failed" | "delayed" | "delivered" | "relayed" | "expanded";
  /** `[245].\d{1,3}.\d{1,3}`. */
  status: string;
  /** `Remote-MTA`, e.g. `dns; mx.example.net`. */
  remoteMta?: string;
  /** `Diagnostic-Code`, e.g. `smtp; 550 5.1.1 No such user`. */
  diagnosticCode?: string;
  lastAttemptDate?: Date;
  extensionFields?: readonly DsnField[];
}

/** A DSN whose every field is given: what SendBounce builds from its request. */
export interface DsnReportInput extends DsnCommon {
  /** The per-message `Reporting-MTA` value, e.g. `dns; mx.example.com`. */
  reportingMta: string;
  extensionFields?: readonly DsnField[];
  recipients: readonly DsnRecipient[];
}

/** A DSN with one reply for every recipient: the Bounce action's and the failure DSN. */
export interface DsnInput extends DsnCommon {
  /** Our hostname, for `Reporting-MTA: dns; <host>`. */
  reportingMta: string;
  arrivalDate: Date;
  /** The original recipients the bounce is for, one per-recipient block each. */
  recipients: string[];
  /** `[45]\d\d`; its class decides `Action: failed` (5) or `Action: delayed` (4). */
  smtpReplyCode: string;
  /** `[45].\d{1,3}.\d{1,3}` of the reply code's class; absent: `5.0.0` or `4.0.0`. */
  statusCode?: string;
}

export type BounceType =
  | "DoesNotExist"
  | "MessageTooLarge"
  | "ExceededQuota"
  | "ContentRejected"
  | "Undefined"
  | "TemporaryFailure";

/** docs/behaviour.md §7: SendBounce's codes per BounceType. A 4xx code makes the DSN `Action: delayed`. */
export const DSN_DEFAULTS: Readonly<Record<BounceType, Readonly<{ smtpReplyCode: string; statusCode: string }>>> =
  Object.freeze({
    DoesNotExist: Object.freeze({ smtpReplyCode: "550", statusCode: "5.1.1" }),
    MessageTooLarge: Object.freeze({ smtpReplyCode: "552", statusCode: "5.3.4" }),
    ExceededQuota: Object.freeze({ smtpReplyCode: "552", statusCode: "5.2.2" }),
    ContentRejected: Object.freeze({ smtpReplyCode: "550", statusCode: "5.6.1" }),
    Undefined: Object.freeze({ smtpReplyCode: "550", statusCode: "5.0.0" }),
    TemporaryFailure: Object.freeze({ smtpReplyCode: "450", statusCode: "4.0.0" }),
  });

const REPLY_CODE = /^[45]\d\d$/;
const STATUS_CODE = /^[45]\.\d{1,3}\.\d{1,3}$/;
/** RFC 3464 section 2.3.4: success (2), persistent (5) or transient (4) failure. */
export const DSN_STATUS = /^[245]\.\d{1,3}\.\d{1,3}$/;
/** RFC 5322 section 3.6.8: printable ASCII but the colon. */
const FIELD_NAME = /^[\x21-\x39\x3b-\x7e]+$/;
/** RFC 5322 section 2.1.1: at most 998 octets before CRLF. */
const MAX_LINE = 998;
const LONG_TOKEN = new RegExp(`\\S{${MAX_LINE - 100},}`);
/** Header and delivery-status lines are folded to this length where whitespace allows. */
const FOLD_AT = 76;
/** Below the 75-character limit of an encoded-word (RFC 2047 section 2) once the charset is added. */
const ENCODED_WORD_CHUNK = 52;

/**
 * The DSN of docs/behaviour.md §7 for one SMTP reply given to every recipient, with
 * `Diagnostic-Code: smtp; <code> <status> <message>`.
 */
export function buildDsn(input: DsnInput): Buffer {
  const { smtpReplyCode } = input;
  if (!REPLY_CODE.test(smtpReplyCode)) throw new RangeError(`invalid SMTP reply code ${JSON.stringify(smtpReplyCode)}`);
  const replyClass = smtpReplyCode.charAt(0);
  const statusCode = input.statusCode ?? `${replyClass}.0.0`;
  if (!STATUS_CODE.test(statusCode) || statusCode.charAt(0) !== replyClass) {
    throw new RangeError(`status code ${JSON.stringify(statusCode)} does not fit reply code ${smtpReplyCode}`);
  }
  if (!/^[\x21-\x7e]+$/.test(input.reportingMta)) throw new TypeError(`invalid reporting MTA ${JSON.stringify(input.reportingMta)}`);
  const diagnosticCode = smtpDiagnostic(smtpReplyCode, statusCode, input.message);
  const action = replyClass === "4" ? "delayed" : "failed";
  return buildDsnReport({
    arrivalDate: input.arrivalDate,
    date: input.date,
    messageId: input.messageId,
    from: input.from,
    to: input.to,
    message: input.message,
    originalHeaders: input.originalHeaders,
    ...(input.originalMessageId === undefined ? {} : { originalMessageId: input.originalMessageId }),
    reportingMta: `dns; ${input.reportingMta}`,
    recipients: input.recipients.map((recipient) => ({ recipient, action, status: statusCode, diagnosticCode })),
  });
}

/**
 * Builds a DSN (RFC 3464, RFC 6522): `multipart/report; report-type=delivery-status` with a
 * text/plain part (the message), a message/delivery-status part and a text/rfc822-headers part
 * (the original headers). Lines end in CRLF. The subject says Delay when every recipient is
 * delayed, Failure otherwise.
 *
 * Pure: the dates, the Message-ID and everything else come from the input, and the MIME
 * boundary is a hash of the input, so the same input always gives the same bytes.
 */
export function buildDsnReport(input: DsnReportInput): Buffer {
  if (input.recipients.length === 0) throw new RangeError("a DSN needs at least one recipient (RFC 3464 section 2.3)");
  if (input.to.trim() === "") throw new RangeError("a DSN is never sent to the null sender");
  for (const recipient of input.recipients) {
    if (!DSN_STATUS.test(recipient.status)) throw new RangeError(`invalid DSN status ${JSON.stringify(recipient.status)} for ${recipient.recipient}`);
  }
  const fieldValues = [
    input.to,
    input.from,
    input.reportingMta,
    ...(input.extensionFields ?? []).flatMap((field) => [field.name, field.value]),
    ...input.recipients.flatMap((r) => [
      r.recipient,
      r.remoteMta ?? "",
      r.diagnosticCode ?? "",
      ...(r.extensionFields ?? []).flatMap((field) => [field.name, field.value]),
    ]),
  ];
  for (const value of fieldValues) {
    if (/[\r\n]/.test(value)) throw new TypeError(`line break in DSN field value ${JSON.stringify(value)}`);
  }
  for (const field of [...(input.extensionFields ?? []), ...input.recipients.flatMap((r) => r.extensionFields ?? [])]) {
    if (!FIELD_NAME.test(field.name)) throw new TypeError(`invalid DSN extension field name ${JSON.stringify(field.name)}`);
  }
  const delayed = input.recipients.every((recipient) => recipient.action === "delayed");

  const message = toCrlf(input.message);
  const headerBlock = Buffer.from(toCrlf(input.originalHeaders.toString("latin1")), "latin1");

  const root = new MimeNode("multipart/report; report-type=delivery-status", {
    baseBoundary: boundaryBase(input, headerBlock),
  });
  root.setHeader("From", input.from);
  root.setHeader("To", input.to);
  root.setHeader("Subject", delayed ? "Delivery Status Notification (Delay)" : "Delivery Status Notification (Failure)");
  root.setHeader("Date", input.date);
  root.setHeader("Message-ID", input.messageId);
  if (input.originalMessageId !== undefined && input.originalMessageId.trim() !== "") {
    root.setHeader("In-Reply-To", input.originalMessageId);
    root.setHeader("References", input.originalMessageId);
  }
  // RFC 3834 section 5: a DSN answers one message, so it is "auto-replied"; it keeps
  // vacation responders and the like from answering it.
  root.setHeader("Auto-Submitted", "auto-replied");
  root.setHeader("MIME-Version", "1.0");

  const text = root.createChild("text/plain");
  text.setContent(message);

  const status = root.createChild("message/delivery-status");
  const statusBody = deliveryStatus(input);
  status.setContent(statusBody);

  let headers: MimeNode;
  let headersBody: string;
  if (isSevenBit(headerBlock)) {
    // MimeNode would quoted-printable encode every line over 76 characters, which most
    // Received and DKIM-Signature lines are; the block is valid 7bit, so it goes out as it came.
    headers = root.createChild("text/rfc822-headers");
    headers.setHeader("Content-Transfer-Encoding", "7bit");
    headersBody = headerBlock.toString("latin1");
  } else {
    // RFC 6532 headers are UTF-8; anything else is left unlabelled rather than mislabelled.
    headers = root.createChild(isUtf8(headerBlock) ? "text/rfc822-headers; charset=utf-8" : "text/rfc822-headers");
    headers.setContent(headerBlock);
    headersBody = encodeBody(headers, headerBlock);
  }

  // MimeNode can only stream (build() is asynchronous), so its nodes make the headers, the
  // boundary and the transfer-encoding choice, and the parts are joined here the way
  // MimeNode.stream joins them.
  const rootHeaders = root.buildHeaders();
  const boundary = root.boundary;
  if (typeof boundary !== "string") throw new Error("multipart/report without a boundary");
  const parts: [MimeNode, string][] = [
    [text, encodeBody(text, message)],
    [status, statusBody],
    [headers, headersBody],
  ];
  let out = `${rootHeaders}\r\n\r\n`;
  for (const [node, body] of parts) out += `--${boundary}\r\n${node.buildHeaders()}\r\n\r\n${body}\r\n`;
  out += `--${boundary}--\r\n`;
  return Buffer.from(out, "latin1");
}

/**
 * The message/delivery-status body (RFC 3464 section 2): the per-message fields, then one block
 * per recipient, blocks separated by an empty line. The part is 7bit by definition, so text
 * that is not printable ASCII goes into RFC 2047 encoded-words.
 */
function deliveryStatus(input: DsnReportInput): string {
  const extensions = (fields: readonly DsnField[] | undefined) => (fields ?? []).map((field) => `${field.name}: ${sevenBit(field.value)}`);
  const blocks = [
    [
      `Reporting-MTA: ${sevenBit(input.reportingMta)}`,
      ...(input.arrivalDate ? [`Arrival-Date: ${rfc5322Date(input.arrivalDate)}`] : []),
      ...extensions(input.extensionFields),
    ],
  ];
  for (const recipient of input.recipients) {
    blocks.push([
      `Final-Recipient: ${recipientAddress(recipient.recipient)}`,
      `Action: ${recipient.action}`,
      `Status: ${recipient.status}`,
      ...(recipient.remoteMta ? [`Remote-MTA: ${sevenBit(recipient.remoteMta)}`] : []),
      ...(recipient.diagnosticCode ? [`Diagnostic-Code: ${sevenBit(recipient.diagnosticCode)}`] : []),
      ...(recipient.lastAttemptDate ? [`Last-Attempt-Date: ${rfc5322Date(recipient.lastAttemptDate)}`] : []),
      ...extensions(recipient.extensionFields),
    ]);
  }
  return blocks.map((fields) => fields.map((field) => `${mimeFuncs.foldLines(field, FOLD_AT)}\r\n`).join("")).join("\r\n");
}

/** A value as a 7bit field allows: printable ASCII as it is, anything else in encoded-words. */
function sevenBit(value: string): string {
  if (!/[^\x20-\x7e]/.test(value) && !LONG_TOKEN.test(value)) return value;
  return mimeFuncs.encodeWord(value, mostlyAscii(value) ? "Q" : "B", ENCODED_WORD_CHUNK);
}

/** `smtp; <reply code> <status> <message>`, the message on one line. */
export function smtpDiagnostic(replyCode: string, statusCode: string, message: string): string {
  return `smtp; ${[replyCode, statusCode, diagnosticText(message)].filter((s) => s !== "").join(" ")}`;
}

/** The message on one line; encoded-words when it is not printable ASCII or has a token too long to fold. */
function diagnosticText(message: string): string {
  const line = message.replace(/\r\n|\r|\n/g, " ").trim();
  // A token this long could not be folded under MAX_LINE once the field name and codes precede it.
  if (!/[^\x20-\x7e]/.test(line) && !LONG_TOKEN.test(line)) return line;
  return mimeFuncs.encodeWord(line, mostlyAscii(line) ? "Q" : "B", ENCODED_WORD_CHUNK);
}

/**
 * `rfc822; <address>`, or for an address that is not ASCII (SMTPUTF8) the 7bit form of RFC 6533
 * section 3: `utf-8; ` with every character outside QCHAR written as `\x{HEX}`.
 */
function recipientAddress(address: string): string {
  if (!/[^\x21-\x7e]/.test(address)) return `rfc822; ${address}`;
  let encoded = "";
  for (const ch of address) {
    const cp = ch.codePointAt(0) as number;
    const qchar = cp >= 0x21 && cp <= 0x7e && ch !== "+" && ch !== "=" && ch !== "\\";
    encoded += qchar ? ch : `\\x{${cp.toString(16).toUpperCase().padStart(2, "0")}}`;
  }
  return `utf-8; ${encoded}`;
}

function encodeBody(node: MimeNode, content: string | Buffer): string {
  switch (node.getTransferEncoding()) {
    case "quoted-printable":
      return qp.wrap(qp.encode(content), FOLD_AT);
    case "base64":
      return base64.wrap(base64.encode(content), FOLD_AT);
    default:
      return typeof content === "string" ? content : content.toString("latin1");
  }
}

/**
 * The boundary must not occur in any part. It is derived from the DSN's Message-ID and from the
 * content itself: deterministic, yet no sender can write the boundary into its own headers,
 * since that would need a fixed point of SHA-256.
 */
function boundaryBase(input: DsnReportInput, headerBlock: Buffer): string {
  const hash = createHash("sha256");
  for (const piece of [input.messageId, input.message, ...input.recipients.map((r) => r.recipient)]) hash.update(piece).update("\0");
  return hash.update(headerBlock).digest("hex").slice(0, 32);
}

function toCrlf(text: string): string {
  return text.replace(/\r\n|\r|\n/g, "\r\n");
}

/** Valid as a 7bit body (RFC 2045 section 2.7): ASCII without NUL, CR and LF only as CRLF, short lines. */
function isSevenBit(block: Buffer): boolean {
  let lineStart = 0;
  for (let i = 0; i < block.length; i++) {
    const c = block[i] as number;
    if (c === 0 || c > 0x7f) return false;
    if (c === 0x0d) {
      if (block[i + 1] !== 0x0a) return false;
      if (i - lineStart > MAX_LINE) return false;
      lineStart = i + 2;
      i++;
    } else if (c === 0x0a) {
      return false;
    }
  }
  return block.length - lineStart <= MAX_LINE;
}

function mostlyAscii(text: string): boolean {
  let other = 0;
  for (const ch of text) if ((ch.codePointAt(0) as number) > 0x7e) other++;
  return other * 2 < text.length;
}

/** RFC 5322 section 3.3, in UTC: `Mon, 23 Nov 2026 12:00:00 +0000`. */
function rfc5322Date(date: Date): string {
  return date.toUTCString().replace(/GMT$/, "+0000");
}
