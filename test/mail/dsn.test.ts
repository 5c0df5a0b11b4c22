import libmime from "libmime";
import { simpleParser } from "mailparser";
import { describe, expect, it } from "vitest";
import { DSN_DEFAULTS, buildDsn } from "../../src/mail/dsn.js";
import type { DsnInput } from "../../src/mail/dsn.js";
import { parseHeaderBlock } from "../../src/mail/index.js";
import type { Header } from "../../src/rules/model.js";

const originalHeaders = Buffer.from(
  [
    "Return-Path: <sender@example.net>",
    "Received: from mail.example.net (mail.example.net [192.0.2.1]) by mx.example.com with SMTP id 0123456789abcdefghijklmnopqrstuv01234567 for a@example.com; Mon, 23 Nov 2026 12:00:00 +0000",
    "From: Sender <sender@example.net>",
    "To: a@example.com, b@example.com",
    "Subject: Hello",
    "Message-ID: <orig@example.net>",
    "",
    "",
  ].join("\r\n"),
);

function input(overrides: Partial<DsnInput> = {}): DsnInput {
  return {
    reportingMta: "mx.example.com",
    arrivalDate: new Date("2026-11-23T12:00:00Z"),
    date: new Date("2026-11-23T12:00:07Z"),
    messageId: "<dsn-1@mx.example.com>",
    from: "bounces@example.com",
    to: "sender@example.net",
    recipients: ["a@example.com", "b@example.com"],
    smtpReplyCode: "550",
    statusCode: "5.1.1",
    message: "Mailbox does not exist",
    originalHeaders,
    originalMessageId: "<orig@example.net>",
    ...overrides,
  };
}

interface Part {
  headers: Header[];
  body: string;
}

/** Splits the DSN by hand, so that the exact bytes of every part can be checked. */
function split(raw: Buffer): { headers: Header[]; parts: Part[] } {
  const text = raw.toString("latin1");
  const end = text.indexOf("\r\n\r\n");
  const headers = parseHeaderBlock(raw.subarray(0, end + 4));
  const boundary = /boundary="([^"]+)"/.exec(header(headers, "Content-Type"))?.[1];
  if (boundary === undefined) throw new Error("no boundary");
  const body = text.slice(end + 4);
  const open = `--${boundary}\r\n`;
  const close = `\r\n--${boundary}--\r\n`;
  expect(body.startsWith(open)).toBe(true);
  expect(body.endsWith(close)).toBe(true);
  const parts = body
    .slice(open.length, -close.length)
    .split(`\r\n--${boundary}\r\n`)
    .map((part) => {
      const at = part.indexOf("\r\n\r\n");
      return { headers: parseHeaderBlock(Buffer.from(part.slice(0, at + 4), "latin1")), body: part.slice(at + 4) };
    });
  return { headers, parts };
}

function header(headers: Header[], name: string): string {
  const found = headers.filter((h) => h.name.toLowerCase() === name.toLowerCase());
  expect(found, name).toHaveLength(1);
  return (found[0] as Header).value;
}

function fields(block: string): Record<string, string> {
  return Object.fromEntries(parseHeaderBlock(Buffer.from(`${block}\r\n`, "latin1")).map((h) => [h.name, h.value]));
}

/** The message/delivery-status body as its per-message fields and one record per recipient. */
function deliveryStatus(body: string): { perMessage: Record<string, string>; perRecipient: Record<string, string>[] } {
  expect(body.endsWith("\r\n")).toBe(true);
  const [perMessage, ...perRecipient] = body.slice(0, -2).split("\r\n\r\n").map(fields);
  if (perMessage === undefined) throw new Error("empty delivery-status");
  return { perMessage, perRecipient };
}

function part(parts: Part[], index: number): Part {
  const found = parts[index];
  if (found === undefined) throw new Error(`no part ${index}`);
  return found;
}

describe("buildDsn", () => {
  it("is a multipart/report of delivery-status with the three parts in order", () => {
    const { headers, parts } = split(buildDsn(input()));
    const contentType = header(headers, "Content-Type");
    expect(contentType).toMatch(/^multipart\/report;/);
    expect(contentType).toMatch(/;\s*report-type=delivery-status;/);
    expect(header(headers, "MIME-Version")).toBe("1.0");
    expect(parts.map((p) => header(p.headers, "Content-Type").split(";")[0])).toEqual([
      "text/plain",
      "message/delivery-status",
      "text/rfc822-headers",
    ]);
  });

  it("has From, To, Subject, Date, Message-ID, Auto-Submitted and the references to the original", async () => {
    const raw = buildDsn(input());
    const { headers } = split(raw);
    expect(header(headers, "From")).toBe("bounces@example.com");
    expect(header(headers, "To")).toBe("sender@example.net");
    expect(header(headers, "Subject")).toBe("Delivery Status Notification (Failure)");
    expect(header(headers, "Date")).toBe("Mon, 23 Nov 2026 12:00:07 +0000");
    expect(header(headers, "Message-ID")).toBe("<dsn-1@mx.example.com>");
    expect(header(headers, "Auto-Submitted")).toBe("auto-replied");
    expect(header(headers, "In-Reply-To")).toBe("<orig@example.net>");
    expect(header(headers, "References")).toBe("<orig@example.net>");

    const parsed = await simpleParser(raw);
    expect(parsed.from?.value).toEqual([{ address: "bounces@example.com", name: "" }]);
    expect(parsed.subject).toBe("Delivery Status Notification (Failure)");
    expect(parsed.date?.toISOString()).toBe("2026-11-23T12:00:07.000Z");
    expect(parsed.messageId).toBe("<dsn-1@mx.example.com>");
    expect(parsed.inReplyTo).toBe("<orig@example.net>");
  });

  it("leaves In-Reply-To and References out when the original has no Message-ID", () => {
    const { headers } = split(buildDsn(input({ originalMessageId: undefined })));
    expect(headers.map((h) => h.name)).not.toContain("In-Reply-To");
    expect(headers.map((h) => h.name)).not.toContain("References");
  });

  it("carries the message as the human-readable part", async () => {
    const raw = buildDsn(input());
    const text = part(split(raw).parts, 0);
    expect(text.body).toBe("Mailbox does not exist");
    expect((await simpleParser(raw)).text).toMatch(/^Mailbox does not exist/);
  });

  it("reports Reporting-MTA, Arrival-Date and one block per recipient", () => {
    const { parts } = split(buildDsn(input()));
    const status = part(parts, 1);
    expect(status.headers.map((h) => h.name)).toEqual(["Content-Type"]);
    const { perMessage, perRecipient } = deliveryStatus(status.body);
    expect(perMessage).toEqual({ "Reporting-MTA": "dns; mx.example.com", "Arrival-Date": "Mon, 23 Nov 2026 12:00:00 +0000" });
    expect(new Date(perMessage["Arrival-Date"] as string).toISOString()).toBe("2026-11-23T12:00:00.000Z");
    expect(perRecipient).toEqual(
      ["a@example.com", "b@example.com"].map((address) => ({
        "Final-Recipient": `rfc822; ${address}`,
        Action: "failed",
        Status: "5.1.1",
        "Diagnostic-Code": "smtp; 550 5.1.1 Mailbox does not exist",
      })),
    );
  });

  it("returns the original headers as they were, 7bit, in text/rfc822-headers", async () => {
    const raw = buildDsn(input());
    const headersPart = part(split(raw).parts, 2);
    expect(header(headersPart.headers, "Content-Transfer-Encoding")).toBe("7bit");
    expect(headersPart.body).toBe(originalHeaders.toString("latin1"));
    const attachment = (await simpleParser(raw)).attachments.find((a) => a.contentType === "text/rfc822-headers");
    expect(attachment?.content.equals(originalHeaders)).toBe(true);
  });

  it("writes CRLF only, within the line limits, and 7bit only", () => {
    const raw = buildDsn(input({ message: `Rejected ${"word ".repeat(100)}` }));
    const text = raw.toString("latin1");
    expect(text).not.toMatch(/\r(?!\n)|(?<!\r)\n/);
    expect(raw.every((b) => b < 0x80)).toBe(true);
    for (const line of text.split("\r\n")) expect(line.length).toBeLessThanOrEqual(998);
    // Everything but the original headers is folded for readers that expect short lines.
    const { parts } = split(raw);
    for (const line of part(parts, 1).body.split("\r\n")) expect(line.length).toBeLessThanOrEqual(78);
  });

  it("defaults the status code from the reply code's class", () => {
    const failed = deliveryStatus(part(split(buildDsn(input({ statusCode: undefined, smtpReplyCode: "554" }))).parts, 1).body);
    expect(failed.perRecipient[0]).toMatchObject({ Status: "5.0.0", Action: "failed", "Diagnostic-Code": "smtp; 554 5.0.0 Mailbox does not exist" });
    const delayed = deliveryStatus(part(split(buildDsn(input({ statusCode: undefined, smtpReplyCode: "451" }))).parts, 1).body);
    expect(delayed.perRecipient[0]).toMatchObject({ Status: "4.0.0", Action: "delayed", "Diagnostic-Code": "smtp; 451 4.0.0 Mailbox does not exist" });
  });

  it("reports a 4xx reply code as delayed, with a Delay subject", () => {
    const { headers, parts } = split(buildDsn(input({ smtpReplyCode: "450", statusCode: "4.2.2" })));
    expect(header(headers, "Subject")).toBe("Delivery Status Notification (Delay)");
    for (const block of deliveryStatus(part(parts, 1).body).perRecipient) {
      expect(block).toMatchObject({ Action: "delayed", Status: "4.2.2", "Diagnostic-Code": "smtp; 450 4.2.2 Mailbox does not exist" });
    }
  });

  it("has the SendBounce defaults of docs/behaviour.md §7", () => {
    expect(DSN_DEFAULTS).toEqual({
      DoesNotExist: { smtpReplyCode: "550", statusCode: "5.1.1" },
      MessageTooLarge: { smtpReplyCode: "552", statusCode: "5.3.4" },
      ExceededQuota: { smtpReplyCode: "552", statusCode: "5.2.2" },
      ContentRejected: { smtpReplyCode: "550", statusCode: "5.6.1" },
      Undefined: { smtpReplyCode: "550", statusCode: "5.0.0" },
      TemporaryFailure: { smtpReplyCode: "450", statusCode: "4.0.0" },
    });
    for (const [type, codes] of Object.entries(DSN_DEFAULTS)) {
      const { perRecipient } = deliveryStatus(part(split(buildDsn(input(codes))).parts, 1).body);
      expect(perRecipient[0]?.Action, type).toBe(type === "TemporaryFailure" ? "delayed" : "failed");
      expect(perRecipient[0]?.Status, type).toBe(codes.statusCode);
    }
  });

  it("encodes a non-ASCII message: quoted-printable UTF-8 text, encoded-words in Diagnostic-Code", async () => {
    const message = "Адресат не найден — l'adresse n'existe pas ✉";
    const raw = buildDsn(input({ message }));
    expect(raw.every((b) => b < 0x80)).toBe(true);
    const { parts } = split(raw);
    const text = part(parts, 0);
    expect(header(text.headers, "Content-Type")).toBe("text/plain; charset=utf-8");
    expect(["quoted-printable", "base64"]).toContain(header(text.headers, "Content-Transfer-Encoding"));
    expect((await simpleParser(raw)).text).toMatch(new RegExp(`^${message}`));
    for (const block of deliveryStatus(part(parts, 1).body).perRecipient) {
      const diagnostic = block["Diagnostic-Code"] as string;
      expect(diagnostic).toMatch(/^smtp; 550 5\.1\.1 =\?UTF-8\?[QB]\?/);
      expect(libmime.decodeWords(diagnostic)).toBe(`smtp; 550 5.1.1 ${message}`);
    }
  });

  it("handles an empty message", () => {
    const { parts } = split(buildDsn(input({ message: "" })));
    expect(part(parts, 0).body).toBe("");
    const [block] = deliveryStatus(part(parts, 1).body).perRecipient;
    expect(block?.["Diagnostic-Code"]).toBe("smtp; 550 5.1.1");
  });

  it("keeps Diagnostic-Code on one logical line when the message has line breaks", () => {
    const { parts } = split(buildDsn(input({ message: "First line.\nSecond line.\r\n" })));
    expect(part(parts, 0).body).toBe("First line.\r\nSecond line.\r\n");
    const [block] = deliveryStatus(part(parts, 1).body).perRecipient;
    expect(block?.["Diagnostic-Code"]).toBe("smtp; 550 5.1.1 First line. Second line.");
  });

  it("encodes an overlong token so that no line passes 998 octets", () => {
    const token = "x".repeat(2000);
    const raw = buildDsn(input({ message: token }));
    for (const line of raw.toString("latin1").split("\r\n")) expect(line.length).toBeLessThanOrEqual(998);
    const [block] = deliveryStatus(part(split(raw).parts, 1).body).perRecipient;
    expect(libmime.decodeWords(block?.["Diagnostic-Code"] as string)).toBe(`smtp; 550 5.1.1 ${token}`);
  });

  it("writes a non-ASCII recipient in the 7bit utf-8 address form of RFC 6533", () => {
    const { parts } = split(buildDsn(input({ recipients: ["üser+x@exämple.com"] })));
    const [block] = deliveryStatus(part(parts, 1).body).perRecipient;
    expect(block?.["Final-Recipient"]).toBe("utf-8; \\x{FC}ser\\x{2B}x@ex\\x{E4}mple.com");
  });

  it("normalises bare line feeds in the original headers to CRLF", () => {
    const lf = Buffer.from("Subject: a\nX-Long: b\n\n");
    expect(part(split(buildDsn(input({ originalHeaders: lf }))).parts, 2).body).toBe("Subject: a\r\nX-Long: b\r\n\r\n");
  });

  it("quoted-printable encodes original headers that are not 7bit, and they decode to the same bytes", async () => {
    const utf8 = Buffer.from("Subject: Grüße\r\nTo: a@example.com\r\n\r\n");
    const raw = buildDsn(input({ originalHeaders: utf8 }));
    expect(raw.every((b) => b < 0x80)).toBe(true);
    const headersPart = part(split(raw).parts, 2);
    expect(header(headersPart.headers, "Content-Type")).toBe("text/rfc822-headers; charset=utf-8");
    expect(header(headersPart.headers, "Content-Transfer-Encoding")).toBe("quoted-printable");
    const attachment = (await simpleParser(raw)).attachments.find((a) => a.contentType === "text/rfc822-headers");
    expect(attachment?.content.equals(utf8)).toBe(true);
  });

  it("gives the same bytes for the same input, and another boundary for another DSN", () => {
    expect(buildDsn(input()).equals(buildDsn(input()))).toBe(true);
    const boundary = (raw: Buffer): string | undefined => /boundary="([^"]+)"/.exec(raw.toString("latin1"))?.[1];
    expect(boundary(buildDsn(input()))).not.toBe(boundary(buildDsn(input({ messageId: "<dsn-2@mx.example.com>" }))));
  });

  it("rejects what would make an invalid DSN", () => {
    expect(() => buildDsn(input({ smtpReplyCode: "250" }))).toThrow(RangeError);
    expect(() => buildDsn(input({ smtpReplyCode: "550", statusCode: "4.1.1" }))).toThrow(RangeError);
    expect(() => buildDsn(input({ statusCode: "5.1" }))).toThrow(RangeError);
    expect(() => buildDsn(input({ recipients: [] }))).toThrow(RangeError);
    expect(() => buildDsn(input({ to: "" }))).toThrow(RangeError);
    expect(() => buildDsn(input({ from: "a@example.com\r\nBcc: x@example.org" }))).toThrow(TypeError);
    expect(() => buildDsn(input({ reportingMta: "mx example" }))).toThrow(TypeError);
  });
});
