import { describe, expect, it } from "vitest";
import { AUTH_DISABLED } from "../../src/mail/auth.js";
import { storedMessage } from "../../src/mail/stored.js";
import type { ReceiptFacts } from "../../src/mail/stored.js";

const envelope = { mailFrom: "bounce@sender.test", recipients: ["info@example.com", "other@example.com"] };
const receipt: ReceiptFacts = {
  messageId: "0123456789abcdefghijklmnopqrstuv01234567",
  receivedAt: new Date("2026-11-23T12:00:00.000Z"),
  client: { ip: "192.0.2.10", helo: "mail.sender.test", reverseDns: null },
  hostname: "mx.receiptd.test",
  scan: "GRAY",
  auth: AUTH_DISABLED,
};

async function collect(body: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function* chunked(bytes: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

/** The stored body from a Buffer, and the same from a stream cut at every chunk size: they must agree. */
async function storedBody(text: string): Promise<string> {
  const raw = Buffer.from(text, "latin1");
  const whole = storedMessage(envelope, raw, receipt).body;
  for (let size = 1; size <= Math.min(raw.length, 40); size++) {
    const streamed = await collect(storedMessage(envelope, chunked(raw, size), receipt).body);
    expect(streamed.toString("latin1"), `chunks of ${size}`).toBe(whole.toString("latin1"));
  }
  return whole.toString("latin1");
}

describe("storedMessage", () => {
  it("puts Return-Path, Received, the X-SES verdicts, Received-SPF and Authentication-Results on top, in SES's order", async () => {
    const auth = Promise.resolve({
      headers: [
        { name: "Received-SPF", value: "pass (x) client-ip=192.0.2.10;" },
        { name: "Authentication-Results", value: "mx.receiptd.test; spf=pass (x) client-ip=192.0.2.10;" },
      ],
    });
    const { headers } = storedMessage(envelope, Buffer.from("Subject: x\r\n\r\nHi\r\n"), { ...receipt, auth });
    expect(await headers).toEqual([
      { name: "Return-Path", value: "<bounce@sender.test>" },
      {
        name: "Received",
        value:
          "from mail.sender.test (unknown [192.0.2.10]) by mx.receiptd.test with SMTP id 0123456789abcdefghijklmnopqrstuv01234567" +
          " for info@example.com; Mon, 23 Nov 2026 12:00:00 +0000 (UTC)",
      },
      { name: "X-SES-Spam-Verdict", value: "GRAY" },
      { name: "X-SES-Virus-Verdict", value: "GRAY" },
      { name: "Received-SPF", value: "pass (x) client-ip=192.0.2.10;" },
      { name: "Authentication-Results", value: "mx.receiptd.test; spf=pass (x) client-ip=192.0.2.10;" },
    ]);
    const unscanned = storedMessage(envelope, Buffer.from("Subject: x\r\n\r\n"), { ...receipt, scan: "DISABLED" });
    expect((await unscanned.headers).map((h) => h.name)).toEqual(["Return-Path", "Received"]);
  });

  it("makes bare LF CRLF, keeps CRLF and bare CR, and ends the message with a line end", async () => {
    expect(await storedBody("Subject: x\n\nline 1\nline 2\r\nline\r3\n")).toBe("Subject: x\r\n\r\nline 1\r\nline 2\r\nline\r3\r\n");
    expect(await storedBody("Subject: x\r\n\r\nno line end")).toBe("Subject: x\r\n\r\nno line end\r\n");
    expect(await storedBody("Subject: x\r\n\r\nends in CR\r")).toBe("Subject: x\r\n\r\nends in CR\r\n");
    const crlf = Buffer.from("Subject: x\r\n\r\nalready CRLF\r\n");
    expect(storedMessage(envelope, crlf, receipt).body.equals(crlf)).toBe(true);
  });

  it("removes the message's own Return-Path fields with their continuation lines, and nothing else", async () => {
    const raw =
      "Return-Path: <forged@evil.test>\n" +
      "From: a@sender.test\n" +
      "return-path :\n <folded@evil.test>\n\t(comment)\n" +
      "X-Return-Path: <kept@sender.test>\n" +
      " continued\n" +
      "RETURN-PATH: <again@evil.test>\n" +
      "Return-Pathological: kept\n" +
      "Subject: x\n" +
      "\n" +
      "Return-Path: <in the body, kept>\n";
    expect(await storedBody(raw)).toBe(
      "From: a@sender.test\r\n" +
        "X-Return-Path: <kept@sender.test>\r\n" +
        " continued\r\n" +
        "Return-Pathological: kept\r\n" +
        "Subject: x\r\n" +
        "\r\n" +
        "Return-Path: <in the body, kept>\r\n",
    );
  });

  it("leaves a message without a header section, or without a body, whole", async () => {
    expect(await storedBody("\r\nReturn-Path: <body@evil.test>\r\n")).toBe("\r\nReturn-Path: <body@evil.test>\r\n");
    expect(await storedBody("Subject: only headers\r\nReturn-Path: <x@evil.test>")).toBe("Subject: only headers\r\n");
  });
});
