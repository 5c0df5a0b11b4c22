// The SES executor over real back ends: DSNs through a real SMTP relay and into the outbox,
// WorkMail over SMTP, SES's size limits, and how failures are classified.
import { simpleParser } from "mailparser";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { executorFromConfig } from "../../src/actions/compose.js";
import { recordingExecutor } from "../../src/actions/record.js";
import { bufferMessage } from "../../src/actions/message.js";
import type { ReceivedMessage } from "../../src/actions/message.js";
import { sesExecutor } from "../../src/actions/ses-executor.js";
import { parseConfig } from "../../src/config/config.js";
import { parseMessageHead } from "../../src/mail/headers.js";
import { evaluate } from "../../src/rules/evaluate.js";
import type { ActionExecutor } from "../../src/rules/executor.js";
import type { RuleAction } from "../../src/rules/model.js";
import { identitiesFrom } from "../../src/rules/recipients.js";
import { ActionError } from "../../src/actions/backend.js";
import type { ActionBackend } from "../../src/actions/backend.js";
import { rule, ruleSet } from "../helpers/rules.js";
import { startSmtpServer } from "../helpers/smtp-server.js";
import type { TestSmtpServer } from "../helpers/smtp-server.js";

const ORG = "arn:aws:workmail:us-east-1:123456789012:organization/m-68755160c4cb4e29a2b2f8fb58f359d7";
const TOPIC = "arn:aws:sns:us-east-1:123456789012:events";
const MESSAGE_ID = "0123456789abcdefghijklmnopqrstuv01234567";
const RECEIVED_AT = new Date("2026-11-23T09:00:00.000Z");
const RAW = Buffer.from(
  "From: Carol <carol@example.net>\r\nTo: info@example.com, sales@example.com\r\nSubject: Hello\r\nMessage-ID: <m1@example.net>\r\n\r\nBody\r\n",
);

function received(bytes = RAW): ReceivedMessage {
  return bufferMessage(bytes, parseMessageHead(bytes), {
    receivedAt: RECEIVED_AT,
    verdicts: { spam: "DISABLED", virus: "DISABLED", spf: "GRAY", dkim: "GRAY", dmarc: "GRAY" },
  });
}

function run(actions: RuleAction[], executor: ActionExecutor<ReceivedMessage>, mailFrom = "carol@example.net", message = received()) {
  return evaluate(
    {
      ruleSet: ruleSet(rule("r", ["example.com"], actions)),
      identities: identitiesFrom(["example.com"]),
      envelope: { mailFrom, recipients: ["info@example.com", "sales@example.com"] },
      messageId: MESSAGE_ID,
      message,
    },
    executor,
  );
}

const bounceAction: RuleAction = {
  type: "Bounce",
  params: { SmtpReplyCode: "550", StatusCode: "5.1.1", Message: "Nobody here by that name.", Sender: "mailer-daemon@example.com", TopicArn: TOPIC },
};

let scratch: string;
let relay: TestSmtpServer;
let mailHost: TestSmtpServer;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "receiptd-ses-executor-"));
  relay = await startSmtpServer();
  mailHost = await startSmtpServer({ lmtp: true });
});
afterAll(async () => {
  await Promise.all([relay?.close(), mailHost?.close()]);
  await rm(scratch, { recursive: true, force: true });
});

function localExecutor(dataDir: string, extra: Record<string, unknown> = {}) {
  const config = parseConfig({ dataDir, hostname: "mx.example.com", ...extra }, { source: "test", baseDir: scratch, env: {} });
  return executorFromConfig(config, { clock: () => new Date(RECEIVED_AT.getTime() + 1200) });
}

async function snsLines(dataDir: string, topic: string): Promise<{ message: string }[]> {
  const text = await readFile(join(scratch, dataDir, "sns", `${topic}.jsonl`), "utf8");
  return text
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as { message: string });
}

describe("Bounce", () => {
  it("sends the DSN of docs/behaviour.md §7 through the SMTP relay, from the null sender to the envelope sender", async () => {
    const executor = localExecutor("bounce-relay", { bounce: { relay: `smtp://127.0.0.1:${relay.port}` } });
    const trace = await run([bounceAction], executor);
    expect(trace.rules[0]!.actions[0]!.outcome).toBe("done");
    const [mail] = relay.received;
    expect(mail!.mailFrom).toBe("");
    expect(mail!.rcptTo).toEqual(["carol@example.net"]);
    const dsn = await simpleParser(mail!.data);
    expect(dsn.from?.text).toBe("mailer-daemon@example.com");
    expect(dsn.to && !Array.isArray(dsn.to) ? dsn.to.text : "").toBe("carol@example.net");
    expect(dsn.subject).toBe("Delivery Status Notification (Failure)");
    expect(dsn.headers.get("content-type")).toMatchObject({ value: "multipart/report", params: { "report-type": "delivery-status" } });
    const raw = mail!.data.toString("utf8");
    expect(raw).toContain("Reporting-MTA: dns; mx.example.com");
    for (const recipient of ["info@example.com", "sales@example.com"]) {
      expect(raw).toContain(`Final-Recipient: rfc822; ${recipient}`);
    }
    expect(raw).toContain("Action: failed");
    expect(raw).toContain("Status: 5.1.1");
    expect(raw).toContain("Diagnostic-Code: smtp; 550 5.1.1 Nobody here by that name.");
    expect(raw).toContain("Subject: Hello");

    const [notification] = (await snsLines("bounce-relay", "events")).map((l) => JSON.parse(l.message));
    expect(notification.receipt.action).toEqual({
      type: "Bounce",
      topicArn: TOPIC,
      smtpReplyCode: "550",
      statusCode: "5.1.1",
      message: "Nobody here by that name.",
      sender: "mailer-daemon@example.com",
    });
    expect(notification.receipt.processingTimeMillis).toBe(1200);
  });

  it("writes the DSN to the outbox when no relay is configured", async () => {
    const trace = await run([bounceAction], localExecutor("bounce-outbox"));
    expect(trace.rules[0]!.actions[0]!.detail).toMatchObject({ dsnTo: "carol@example.net" });
    const files = await readdir(join(scratch, "bounce-outbox", "outbox"));
    expect(files).toHaveLength(1);
    const dsn = await simpleParser(await readFile(join(scratch, "bounce-outbox", "outbox", files[0]!)));
    expect(dsn.subject).toBe("Delivery Status Notification (Failure)");
  });

  it("never sends a DSN to the null sender, but still notifies", async () => {
    const trace = await run([bounceAction], localExecutor("bounce-null"), "");
    expect(trace.rules[0]!.actions[0]).toMatchObject({ outcome: "done", detail: { dsnTo: null } });
    await expect(readdir(join(scratch, "bounce-null", "outbox"))).rejects.toMatchObject({ code: "ENOENT" });
    expect(await snsLines("bounce-null", "events")).toHaveLength(1);
  });
});

describe("WorkMail", () => {
  it("hands the message, with added headers, to the organization's mail host over LMTP", async () => {
    const executor = localExecutor("workmail", { workmail: { organizations: { [ORG]: { host: "127.0.0.1", port: mailHost.port, lmtp: true } } } });
    const trace = await run(
      [
        { type: "AddHeader", params: { HeaderName: "X-Route", HeaderValue: "mailbox" } },
        { type: "WorkMail", params: { OrganizationArn: ORG } },
      ],
      executor,
    );
    expect(trace.rules[0]!.actions.map((a) => a.outcome)).toEqual(["done", "done"]);
    const [mail] = mailHost.received;
    expect(mail!.rcptTo).toEqual(["info@example.com", "sales@example.com"]);
    expect(mail!.data.equals(Buffer.concat([Buffer.from("X-Route: mailbox\r\n"), RAW]))).toBe(true);
  });
});

describe("Connect", () => {
  const connect: RuleAction = {
    type: "Connect",
    params: {
      InstanceARN: "arn:aws:connect:us-east-1:123456789012:instance/a1b2c3d4-5678-90ab-cdef-EXAMPLE11111",
      IAMRoleARN: "arn:aws:iam::123456789012:role/ses-start-email-contact",
    },
  };

  it.each([
    ["the SES executor", () => localExecutor("connect")],
    ["the recording executor of replay", () => recordingExecutor<ReceivedMessage>()],
  ])("fails for good, by name, in %s, and the rest of the rule does not run", async (_, executor) => {
    const trace = await run([connect, { type: "S3", params: { BucketName: "after-connect" } }], executor());
    expect(trace.end).toBe("failed");
    expect(trace.rules[0]!.actions[0]).toMatchObject({ type: "Connect", outcome: "failed", failure: "permanent" });
    expect(trace.rules[0]!.actions[0]!.error).toBe(
      "ConnectAction is not supported by receiptd: it has no Amazon Connect back end, so no email contact can be " +
        "started in arn:aws:connect:us-east-1:123456789012:instance/a1b2c3d4-5678-90ab-cdef-EXAMPLE11111",
    );
    expect(trace.rules[0]!.actions[1]!.outcome).toBe("skipped");
  });
});

describe("SES's size limits in strict mode", () => {
  const big = Buffer.concat([RAW, Buffer.alloc(150 * 1024, "a")]);

  it("an SNS action refuses a message over 150 KB for good; without strict mode it publishes", async () => {
    const strict = await run([{ type: "SNS", params: { TopicArn: TOPIC } }], localExecutor("limit-strict"), "carol@example.net", received(big));
    expect(strict.end).toBe("failed");
    expect(strict.rules[0]!.actions[0]).toMatchObject({ outcome: "failed", failure: "permanent" });
    expect(strict.rules[0]!.actions[0]!.error).toMatch(/exceeds the SNS action limit of 153600 bytes/);

    const lax = await run([{ type: "SNS", params: { TopicArn: TOPIC } }], localExecutor("limit-lax", { strict: false }), "carol@example.net", received(big));
    expect(lax.end).toBe("completed");
    const [line] = await snsLines("limit-lax", "events");
    expect(JSON.parse(line!.message).content).toHaveLength(big.length);
  });

  it("an S3 action refuses over 40 MB before reading a byte", async () => {
    let opened = false;
    const huge: ReceivedMessage = { ...received(), size: 40 * 1024 * 1024 + 1, open: () => ((opened = true), received().open()) };
    const trace = await run([{ type: "S3", params: { BucketName: "b" } }], localExecutor("limit-s3"), "carol@example.net", huge);
    expect(trace.rules[0]!.actions[0]).toMatchObject({ outcome: "failed", failure: "permanent" });
    expect(opened).toBe(false);
  });
});

describe("failures", () => {
  const failingBackend = (error: unknown): ActionBackend => ({
    putObject: () => Promise.reject(error),
    publish: () => Promise.reject(error),
    invoke: () => Promise.reject(error),
    sendDsn: () => Promise.reject(error),
    deliverToMailbox: () => Promise.reject(error),
    targetExists: () => Promise.reject(error),
  });

  it.each([
    ["a permanent back-end error stays permanent", new ActionError("permanent", "NoSuchBucket"), "permanent"],
    ["a transient one stays transient", new ActionError("transient", "503 Slow Down"), "transient"],
    ["anything unclassified is retried", new Error("socket hang up"), "transient"],
  ])("%s", async (_, error, failure) => {
    const executor = sesExecutor({ backend: failingBackend(error), hostname: "mx.example.com" });
    const trace = await run([{ type: "S3", params: { BucketName: "b" } }, { type: "Stop", params: { Scope: "RuleSet" } }], executor);
    expect(trace.end).toBe("failed");
    expect(trace.rules[0]!.actions[0]).toMatchObject({ outcome: "failed", failure });
    expect(trace.rules[0]!.actions[1]!.outcome).toBe("skipped");
  });

  it("a topic notification that fails fails its action", async () => {
    const backend: ActionBackend = { ...failingBackend(new ActionError("permanent", "NotFound")), putObject: async () => ({}) };
    const trace = await run([{ type: "S3", params: { BucketName: "b", TopicArn: TOPIC } }], sesExecutor({ backend, hostname: "h" }));
    expect(trace.rules[0]!.actions[0]).toMatchObject({ outcome: "failed", failure: "permanent", error: "NotFound" });
  });
});
