import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { parseMessageHead } from "../../src/mail/index.js";
import type { Header, RuleAction } from "../../src/rules/model.js";
import {
  HEADERS_LIMIT_BYTES,
  NOTIFICATION_SUBJECT,
  lambdaEvent,
  receivedNotification,
  sesMail,
  sesReceipt,
  sesReceiptAction,
  snsContent,
} from "../../src/ses/index.js";
import type { SesLambdaEvent, SesMail, SesReceipt, Verdicts } from "../../src/ses/index.js";

/*
 * Golden tests against the examples of the SES developer guide, stored as they are documented
 * (only the line breaks the guide adds for readability removed, as it asks) in test/fixtures/ses:
 * - notification-sns-action-2015.json, notification-s3-action-2015.json:
 *   receiving-email-notifications-examples.md
 * - lambda-event.json, notification-sns-action-base64.json (the SNS Message):
 *   receiving-email-action-lambda-event.md
 * Comparisons are of JSON text, so key order counts as much as values.
 */

interface Notification {
  notificationType: string;
  mail: SesMail;
  receipt: SesReceipt;
  content?: string;
}

const fixture = async <T>(name: string): Promise<T> =>
  JSON.parse(await readFile(new URL(`../fixtures/ses/${name}`, import.meta.url), "utf8")) as T;

/** The documented headers run through the parser, as a received message's would be. */
function parsedHeaders(headers: readonly Header[]): Header[] {
  const block = headers.map(({ name, value }) => `${name}: ${value}\r\n`).join("");
  return parseMessageHead(Buffer.from(`${block}\r\nbody\r\n`)).headers;
}

function mailLike(documented: SesMail): SesMail {
  return sesMail({
    timestamp: new Date(documented.timestamp),
    source: documented.source,
    messageId: documented.messageId,
    headers: parsedHeaders(documented.headers),
  });
}

const PASS: Verdicts = { spam: "PASS", virus: "PASS", spf: "PASS", dkim: "PASS", dmarc: "PASS" };

const h = (name: string, value: string): Header => ({ name, value });

describe("golden: the Lambda event example", () => {
  it("is reproduced byte for byte", async () => {
    const documented = await fixture<SesLambdaEvent>("lambda-event.json");
    const [record] = documented.Records;
    const { mail, receipt } = record.ses;
    const event = lambdaEvent(
      mailLike(mail),
      sesReceipt({
        timestamp: new Date(receipt.timestamp),
        processingTimeMillis: receipt.processingTimeMillis,
        recipients: receipt.recipients,
        verdicts: { ...PASS, dmarc: "GRAY" },
        action: sesReceiptAction(
          { type: "Lambda", params: { FunctionArn: "arn:aws:lambda:us-east-1:123456789012:function:IncomingEmail" } },
          {},
        ),
      }),
    );
    // The guide redacted the Message-ID header and commonHeaders.messageId differently; SES
    // copies the header, as the other examples show.
    mail.commonHeaders.messageId = "<F8098FDD-49A3-442D-9935-F6112example@example.com>";
    expect(JSON.stringify(event)).toBe(JSON.stringify(documented));
  });
});

describe("golden: the SNS action notification of the Lambda guide (Base64)", () => {
  it("is reproduced byte for byte, content included", async () => {
    const documented = await fixture<Notification>("notification-sns-action-base64.json");
    const { mail, receipt } = documented;
    const message = Buffer.from(documented.content ?? "", "base64");
    const { content, encoding } = snsContent(message, "Base64");
    const action = sesReceiptAction(
      { type: "SNS", params: { TopicArn: "arn:aws:sns:us-east-1:123456789012:IncomingEmail", Encoding: "Base64" } },
      { encoding },
    );
    const json = receivedNotification(
      mailLike(mail),
      sesReceipt({
        timestamp: new Date(receipt.timestamp),
        processingTimeMillis: receipt.processingTimeMillis,
        recipients: receipt.recipients,
        verdicts: { ...PASS, dkim: "GRAY", dmarc: "GRAY" },
        action,
      }),
      content,
    );
    expect(json).toBe(JSON.stringify(documented));
  });
});

describe("golden: the 2015 notification examples", () => {
  // These examples predate DMARC verdicts and the SNS Encoding option, and list receipt before
  // mail where later examples and live notifications put mail first; everything else matches.
  it("reproduces the SNS action notification", async () => {
    const documented = await fixture<Notification>("notification-sns-action-2015.json");
    const { content, encoding } = snsContent(Buffer.from(documented.content ?? ""), "UTF-8");
    const json = receivedNotification(
      mailLike(documented.mail),
      sesReceipt({
        timestamp: new Date(documented.receipt.timestamp),
        processingTimeMillis: documented.receipt.processingTimeMillis,
        recipients: documented.receipt.recipients,
        verdicts: PASS,
        action: sesReceiptAction(
          { type: "SNS", params: { TopicArn: "arn:aws:sns:us-east-1:012345678912:example-topic" } },
          { encoding },
        ),
      }),
      content,
    );
    const ours = JSON.parse(json) as Notification;
    const { action, ...verdictsAndAll } = documented.receipt;
    expect(Object.keys(ours)).toEqual(["notificationType", "mail", "receipt", "content"]);
    expect(ours.notificationType).toBe("Received");
    expect(JSON.stringify(ours.mail)).toBe(JSON.stringify(documented.mail));
    expect(JSON.stringify(ours.receipt)).toBe(
      JSON.stringify({ ...verdictsAndAll, dmarcVerdict: { status: "PASS" }, action: { ...action, encoding: "UTF8" } }),
    );
    expect(ours.content).toBe(documented.content);
  });

  it("reproduces the S3 action (alert) notification", async () => {
    const documented = await fixture<Notification>("notification-s3-action-2015.json");
    const json = receivedNotification(
      mailLike(documented.mail),
      sesReceipt({
        timestamp: new Date(documented.receipt.timestamp),
        processingTimeMillis: documented.receipt.processingTimeMillis,
        recipients: documented.receipt.recipients,
        verdicts: PASS,
        action: sesReceiptAction(
          {
            type: "S3",
            params: { BucketName: "my-S3-bucket", TopicArn: "arn:aws:sns:us-east-1:012345678912:example-topic" },
          },
          { objectKey: "\\email" },
        ),
      }),
    );
    const ours = JSON.parse(json) as Notification;
    const { action, ...verdictsAndAll } = documented.receipt;
    if (action.type !== "S3") throw new Error("the example is of an S3 action");
    const { objectKey, ...beforeKey } = action;
    expect(Object.keys(ours)).toEqual(["notificationType", "mail", "receipt"]);
    expect(JSON.stringify(ours.mail)).toBe(JSON.stringify(documented.mail));
    expect(JSON.stringify(ours.receipt)).toBe(
      JSON.stringify({
        ...verdictsAndAll,
        dmarcVerdict: { status: "PASS" },
        action: { ...beforeKey, objectKeyPrefix: "", objectKey },
      }),
    );
  });
});

describe("sesMail", () => {
  const base = { timestamp: new Date(Date.UTC(2024, 2, 1, 12, 0, 0, 7)), source: "a@example.net", messageId: "m1" };

  /** Headers whose "name: value\r\n" lines add up to exactly `bytes`. */
  function headersOf(bytes: number): Header[] {
    const line = (value: string): Header => h("X-Fill", value);
    const filler: Header[] = [];
    let left = bytes;
    while (left > 1000) {
      filler.push(line("x".repeat(1000 - "X-Fill: \r\n".length)));
      left -= 1000;
    }
    filler.push(line("x".repeat(left - "X-Fill: \r\n".length)));
    return filler;
  }

  it("keeps SES's key order and timestamp format", () => {
    const mail = sesMail({ ...base, headers: [h("To", "b@example.com")] });
    expect(Object.keys(mail)).toEqual([
      "timestamp",
      "source",
      "messageId",
      "destination",
      "headersTruncated",
      "headers",
      "commonHeaders",
    ]);
    expect(mail.timestamp).toBe("2024-03-01T12:00:00.007Z");
  });

  it("keeps all headers at exactly 10 KB", () => {
    const headers = headersOf(HEADERS_LIMIT_BYTES);
    const mail = sesMail({ ...base, headers });
    expect(mail.headersTruncated).toBe(false);
    expect(mail.headers).toEqual(headers);
  });

  it("cuts at the last whole header that fits when one byte over", () => {
    const headers = headersOf(HEADERS_LIMIT_BYTES + 1);
    const mail = sesMail({ ...base, headers });
    expect(mail.headersTruncated).toBe(true);
    expect(mail.headers).toEqual(headers.slice(0, -1));
  });

  it("counts bytes, not characters", () => {
    // 10 240 characters, but each "é" is two bytes in UTF-8.
    const value = "é".repeat(100) + "x".repeat(HEADERS_LIMIT_BYTES - 100 - "X-Fill: \r\n".length);
    const mail = sesMail({ ...base, headers: [h("X-Fill", value)] });
    expect(mail.headersTruncated).toBe(true);
    expect(mail.headers).toEqual([]);
  });

  it("takes destination and commonHeaders from every header, also those cut", () => {
    const headers = [...headersOf(HEADERS_LIMIT_BYTES), h("To", "late@example.com"), h("Subject", "late")];
    const mail = sesMail({ ...base, headers });
    expect(mail.headersTruncated).toBe(true);
    expect(mail.headers).toHaveLength(headers.length - 2);
    expect(mail.destination).toEqual(["late@example.com"]);
    expect(mail.commonHeaders).toEqual({ to: ["late@example.com"], subject: "late" });
  });

  it("has commonHeaders only for the headers the message has", () => {
    const mail = sesMail({ ...base, headers: [h("From", "Ann <ann@example.net>"), h("Subject", "hi")] });
    expect(JSON.stringify(mail.commonHeaders)).toBe('{"from":["Ann <ann@example.net>"],"subject":"hi"}');
    expect(mail.destination).toEqual([]);
  });

  it("takes destination from To and Cc, not Bcc", () => {
    const mail = sesMail({
      ...base,
      headers: [h("To", "A <a@example.com>, b@example.com"), h("Cc", "c@example.com"), h("Bcc", "d@example.com")],
    });
    expect(mail.destination).toEqual(["a@example.com", "b@example.com", "c@example.com"]);
  });

  it("lists prepended headers first, and a prepended Return-Path is the returnPath", () => {
    const original = [h("Return-Path", "<old@example.net>"), h("From", "a@example.net"), h("To", "b@example.com")];
    const prepended = [h("X-Rule", "second"), h("Return-Path", "<new@example.net>"), h("X-Rule", "first")];
    const mail = sesMail({ ...base, headers: [...prepended, ...original] });
    expect(mail.headers).toEqual([...prepended, ...original]);
    expect(mail.commonHeaders.returnPath).toBe("new@example.net");
  });

  it("emits each header as exactly {name, value}", () => {
    const header = { value: "v", name: "X-A", extra: 1 };
    const mail = sesMail({ ...base, headers: [header] });
    expect(JSON.stringify(mail.headers)).toBe('[{"name":"X-A","value":"v"}]');
  });
});

describe("sesReceipt", () => {
  const input = {
    timestamp: new Date("2024-03-01T12:00:00.250Z"),
    processingTimeMillis: 12.6,
    recipients: ["b@example.com"],
    action: sesReceiptAction({ type: "Stop", params: { Scope: "RuleSet" } }, {}),
  };

  it("keeps SES's key order, with whole milliseconds", () => {
    const receipt = sesReceipt({ ...input, verdicts: { ...PASS, spam: "DISABLED", virus: "DISABLED" } });
    expect(JSON.stringify(receipt)).toBe(
      '{"timestamp":"2024-03-01T12:00:00.250Z","processingTimeMillis":13,"recipients":["b@example.com"],' +
        '"spamVerdict":{"status":"DISABLED"},"virusVerdict":{"status":"DISABLED"},"spfVerdict":{"status":"PASS"},' +
        '"dkimVerdict":{"status":"PASS"},"dmarcVerdict":{"status":"PASS"},"action":{"type":"Stop"}}',
    );
  });

  it("has dmarcPolicy only when given, after dmarcVerdict", () => {
    expect("dmarcPolicy" in sesReceipt({ ...input, verdicts: { ...PASS, dmarc: "FAIL" } })).toBe(false);
    const receipt = sesReceipt({ ...input, verdicts: { ...PASS, dmarc: "FAIL", dmarcPolicy: "reject" } });
    expect(Object.keys(receipt).slice(-3)).toEqual(["dmarcVerdict", "dmarcPolicy", "action"]);
    expect(receipt.dmarcPolicy).toBe("reject");
  });
});

describe("sesReceiptAction", () => {
  const topicArn = "arn:aws:sns:us-east-1:123456789012:t";
  const cases: [string, RuleAction, Parameters<typeof sesReceiptAction>[1], string][] = [
    [
      "S3 with prefix and topic",
      { type: "S3", params: { BucketName: "b", ObjectKeyPrefix: "in/", TopicArn: topicArn, KmsKeyArn: "k" } },
      { objectKey: "in/m1" },
      `{"type":"S3","topicArn":"${topicArn}","bucketName":"b","objectKeyPrefix":"in/","objectKey":"in/m1"}`,
    ],
    [
      "S3 without prefix or topic",
      { type: "S3", params: { BucketName: "b" } },
      { objectKey: "m1" },
      '{"type":"S3","bucketName":"b","objectKeyPrefix":"","objectKey":"m1"}',
    ],
    [
      "SNS, UTF-8 by default",
      { type: "SNS", params: { TopicArn: topicArn } },
      {},
      `{"type":"SNS","topicArn":"${topicArn}","encoding":"UTF8"}`,
    ],
    [
      "SNS, Base64",
      { type: "SNS", params: { TopicArn: topicArn, Encoding: "Base64" } },
      {},
      `{"type":"SNS","topicArn":"${topicArn}","encoding":"BASE64"}`,
    ],
    [
      "SNS, the encoding given",
      { type: "SNS", params: { TopicArn: topicArn, Encoding: "UTF-8" } },
      { encoding: "BASE64" },
      `{"type":"SNS","topicArn":"${topicArn}","encoding":"BASE64"}`,
    ],
    [
      "Bounce with status code and topic",
      {
        type: "Bounce",
        params: {
          SmtpReplyCode: "550",
          StatusCode: "5.1.1",
          Message: "gone",
          Sender: "p@example.com",
          TopicArn: topicArn,
        },
      },
      {},
      `{"type":"Bounce","topicArn":"${topicArn}","smtpReplyCode":"550","statusCode":"5.1.1",` +
        `"message":"gone","sender":"p@example.com"}`,
    ],
    [
      "Bounce without status code",
      { type: "Bounce", params: { SmtpReplyCode: "550", Message: "gone", Sender: "p@example.com" } },
      {},
      '{"type":"Bounce","smtpReplyCode":"550","message":"gone","sender":"p@example.com"}',
    ],
    [
      "Lambda, Event by default",
      { type: "Lambda", params: { FunctionArn: "arn:f" } },
      {},
      '{"type":"Lambda","functionArn":"arn:f","invocationType":"Event"}',
    ],
    [
      "Lambda, RequestResponse with topic",
      { type: "Lambda", params: { FunctionArn: "arn:f", InvocationType: "RequestResponse", TopicArn: topicArn } },
      {},
      `{"type":"Lambda","topicArn":"${topicArn}","functionArn":"arn:f","invocationType":"RequestResponse"}`,
    ],
    ["Stop", { type: "Stop", params: { Scope: "RuleSet" } }, {}, '{"type":"Stop"}'],
    [
      "Stop with topic",
      { type: "Stop", params: { Scope: "RuleSet", TopicArn: topicArn } },
      {},
      `{"type":"Stop","topicArn":"${topicArn}"}`,
    ],
    [
      "WorkMail",
      { type: "WorkMail", params: { OrganizationArn: "arn:o", TopicArn: topicArn } },
      {},
      `{"type":"WorkMail","topicArn":"${topicArn}","organizationArn":"arn:o"}`,
    ],
    [
      "AddHeader",
      { type: "AddHeader", params: { HeaderName: "X-A", HeaderValue: "1" } },
      {},
      '{"type":"AddHeader"}',
    ],
  ];

  it.each(cases)("%s", (_name, action, extra, expected) => {
    expect(JSON.stringify(sesReceiptAction(action, extra))).toBe(expected);
  });

  it("refuses to report an S3 action without its object key", () => {
    expect(() => sesReceiptAction({ type: "S3", params: { BucketName: "b" } }, {})).toThrow(/object key/);
  });

  it("refuses an action missing a required parameter", () => {
    expect(() => sesReceiptAction({ type: "Lambda", params: { FunctionArn: undefined } }, {})).toThrow(
      /LambdaAction.FunctionArn/,
    );
  });
});

describe("receivedNotification and lambdaEvent", () => {
  const mail = sesMail({ timestamp: new Date(0), source: "a@example.net", messageId: "m1", headers: [] });
  const receipt = sesReceipt({
    timestamp: new Date(5),
    processingTimeMillis: 5,
    recipients: ["b@example.com"],
    verdicts: PASS,
    action: sesReceiptAction({ type: "Lambda", params: { FunctionArn: "arn:f" } }, {}),
  });

  it("has no content unless given", () => {
    expect(Object.keys(JSON.parse(receivedNotification(mail, receipt)) as object)).toEqual([
      "notificationType",
      "mail",
      "receipt",
    ]);
  });

  it("wraps mail and receipt in one aws:ses record, without content", () => {
    const ses = `{"mail":${JSON.stringify(mail)},"receipt":${JSON.stringify(receipt)}}`;
    expect(JSON.stringify(lambdaEvent(mail, receipt))).toBe(
      `{"Records":[{"eventSource":"aws:ses","eventVersion":"1.0","ses":${ses}}]}`,
    );
  });

  it("has SES's subject", () => {
    expect(NOTIFICATION_SUBJECT).toBe("Amazon SES Email Receipt Notification");
  });
});

describe("snsContent", () => {
  const text = "Subject: Grüße 😀\r\n\r\nÀ bientôt\r\n";
  const message = Buffer.from(text, "utf8");

  it("gives the raw text for UTF-8, the default", () => {
    expect(snsContent(message, "UTF-8")).toEqual({ content: text, encoding: "UTF8" });
    expect(snsContent(message, undefined)).toEqual({ content: text, encoding: "UTF8" });
  });

  it("gives every byte in base64 for Base64", () => {
    const { content, encoding } = snsContent(message, "Base64");
    expect(encoding).toBe("BASE64");
    expect(content).toBe(message.toString("base64"));
    expect(Buffer.from(content, "base64").equals(message)).toBe(true);
  });

  it("loses bytes that are no UTF-8 in UTF-8, keeps them in Base64", () => {
    const latin1 = Buffer.from("Gr\xfc\xdfe", "latin1");
    expect(snsContent(latin1, "UTF-8").content).toBe("Gr\ufffd\ufffde");
    expect(Buffer.from(snsContent(latin1, "Base64").content, "base64").equals(latin1)).toBe(true);
  });

  it("survives the notification JSON unchanged", () => {
    const { content } = snsContent(message, "UTF-8");
    const json = receivedNotification(
      sesMail({ timestamp: new Date(0), source: "a@example.net", messageId: "m1", headers: [] }),
      sesReceipt({
        timestamp: new Date(0),
        processingTimeMillis: 0,
        recipients: [],
        verdicts: PASS,
        action: sesReceiptAction({ type: "SNS", params: { TopicArn: "arn:t" } }, {}),
      }),
      content,
    );
    expect(json).toContain('"content":"Subject: Grüße 😀\\r\\n\\r\\nÀ bientôt\\r\\n"');
    expect((JSON.parse(json) as Notification).content).toBe(text);
  });
});
