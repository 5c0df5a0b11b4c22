import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import {
  CreateReceiptRuleCommand,
  CreateReceiptRuleSetCommand,
  PutIdentityPolicyCommand,
  SendBounceCommand,
  SetActiveReceiptRuleSetCommand,
  UpdateAccountSendingEnabledCommand,
  VerifyDomainIdentityCommand,
  VerifyEmailIdentityCommand,
} from "@aws-sdk/client-ses";
import type { SESClient, SendBounceCommandInput } from "@aws-sdk/client-ses";
import { simpleParser } from "mailparser";
import nodemailer from "nodemailer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULTS } from "../../src/config/defaults.js";
import { SpoolInspector } from "../../src/spool/inspect.js";
import type { SpooledMessage } from "../../src/spool/inspect.js";
import { startApiDaemon } from "../helpers/api-daemon.js";
import type { ApiDaemon } from "../helpers/api-daemon.js";

const OWN = "123456789012";
const PARTNER = "210987654321";
const BROKEN = "arn:aws:lambda:us-east-1:123456789012:function:broken";
const PARTNER_ARN = `arn:aws:ses:us-east-1:${PARTNER}:identity/partner.example`;

let api: ApiDaemon;
let ses: SESClient;
let partner: SESClient;

async function send(to: string, subject = "original"): Promise<string> {
  const transport = nodemailer.createTransport({ host: "127.0.0.1", port: api.smtpPort, secure: false, ignoreTLS: true });
  try {
    const info = await transport.sendMail({ from: "sender@example.org", to, subject, text: "hello", messageId: `<${subject}@example.org>` });
    const id = /^250 Ok ([0-9a-v]{40})$/.exec(info.response)?.[1];
    if (!id) throw new Error(`unexpected reply ${info.response}`);
    return id;
  } finally {
    transport.close();
  }
}

async function processed(id: string): Promise<SpooledMessage> {
  const inspector = new SpoolInspector(join(api.dataDir, DEFAULTS.spoolDirInDataDir));
  for (let i = 0; i < 200; i++) {
    const message = await inspector.find(id);
    if (message && message.area !== "queued") return message;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`message ${id} was not processed`);
}

const outbox = () => join(api.dataDir, "outbox");
async function outboxFiles(): Promise<string[]> {
  return (await readdir(outbox()).catch(() => [] as string[])).filter((name) => name.endsWith(".eml")).sort();
}

async function errorOf(promise: Promise<unknown>): Promise<{ name: string; message: string; status?: number }> {
  try {
    await promise;
  } catch (error) {
    const e = error as { name: string; message: string; $metadata?: { httpStatusCode?: number } };
    return { name: e.name, message: e.message, status: e.$metadata?.httpStatusCode };
  }
  throw new Error("expected the call to fail");
}

const bounce = (id: string, extra: Partial<SendBounceCommandInput> = {}): SendBounceCommand =>
  new SendBounceCommand({
    OriginalMessageId: id,
    BounceSender: "bounces@example.net",
    BouncedRecipientInfoList: [{ Recipient: "a@example.net", BounceType: "DoesNotExist" }],
    ...extra,
  });

beforeAll(async () => {
  api = await startApiDaemon({
    // A handler that cannot be loaded: the action fails for good, and the message is dead-lettered.
    local: { lambdaHandlers: { [BROKEN]: "no-such-handler.mjs" } },
    api: {
      host: "127.0.0.1",
      port: 0,
      credentials: [
        { accessKeyId: "test", secretAccessKey: "test", account: OWN },
        { accessKeyId: "partner", secretAccessKey: "partnersecret", account: PARTNER },
      ],
    },
  });
  ses = api.client();
  partner = api.client({ accessKeyId: "partner", secretAccessKey: "partnersecret" });
  await ses.send(new VerifyDomainIdentityCommand({ Domain: "example.net" }));
  await ses.send(new VerifyDomainIdentityCommand({ Domain: "bounce.example" }));
  await ses.send(new CreateReceiptRuleSetCommand({ RuleSetName: "inbound" }));
  await ses.send(
    new CreateReceiptRuleCommand({
      RuleSetName: "inbound",
      Rule: { Name: "keep", Enabled: true, Recipients: ["example.net"], Actions: [{ S3Action: { BucketName: "mail" } }] },
    }),
  );
  await ses.send(
    new CreateReceiptRuleCommand({
      RuleSetName: "inbound",
      After: "keep",
      Rule: {
        Name: "refuse",
        Enabled: true,
        Recipients: ["refuse@bounce.example"],
        Actions: [{ BounceAction: { Sender: "postmaster@bounce.example", SmtpReplyCode: "550", StatusCode: "5.1.1", Message: "gone" } }],
      },
    }),
  );
  await ses.send(
    new CreateReceiptRuleCommand({
      RuleSetName: "inbound",
      After: "refuse",
      Rule: {
        Name: "broken",
        Enabled: true,
        Recipients: ["broken@bounce.example"],
        Actions: [{ LambdaAction: { FunctionArn: BROKEN, InvocationType: "RequestResponse" } }],
      },
    }),
  );
  await ses.send(new SetActiveReceiptRuleSetCommand({ RuleSetName: "inbound" }));
});
afterAll(async () => api?.stop());

describe("SendBounce", () => {
  it("sends an RFC 3464 DSN for a received message to its envelope sender and returns its MessageId", async () => {
    const id = await send("a@example.net", "first");
    await processed(id);
    const before = await outboxFiles();
    const { MessageId } = await ses.send(bounce(id, { Explanation: "No such person here." }));
    expect(MessageId).toMatch(/^[0-9a-v]{40}$/);
    const added = (await outboxFiles()).filter((name) => !before.includes(name));
    expect(added).toHaveLength(1);
    const raw = await readFile(join(outbox(), added[0]!));
    const dsn = await simpleParser(raw);
    expect(dsn.from?.text).toBe("bounces@example.net");
    expect(dsn.to && !Array.isArray(dsn.to) ? dsn.to.text : "").toBe("sender@example.org");
    expect(dsn.messageId).toBe(`<${MessageId}@mx.receiptd.test>`);
    expect(dsn.inReplyTo).toBe("<first@example.org>");
    expect(dsn.headers.get("content-type")).toMatchObject({ value: "multipart/report", params: { "report-type": "delivery-status" } });
    const text = raw.toString("latin1");
    expect(text).toContain("No such person here.");
    expect(text).toContain("Reporting-MTA: dns; mx.receiptd.test\r\n");
    expect(text).toContain("Final-Recipient: rfc822; a@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 No such person here.\r\n");
    // The original headers as actions saw them, the receipt headers first.
    expect(text).toMatch(/Content-Type: text\/rfc822-headers\r\n[\s\S]*Received: from [\s\S]*Subject: first\r\n/);
  });

  it("takes per-recipient DSN fields, MessageDsn and a 4xx BounceType as delayed", async () => {
    const id = await send("a@example.net, b@example.net", "second");
    await processed(id);
    const before = await outboxFiles();
    await ses.send(
      bounce(id, {
        MessageDsn: { ReportingMta: "dns; gateway.example.net", ArrivalDate: new Date("2026-12-03T10:00:00Z"), ExtensionFields: [{ Name: "X-Ticket", Value: "42" }] },
        BouncedRecipientInfoList: [
          { Recipient: "a@example.net", BounceType: "TemporaryFailure" },
          {
            Recipient: "b@example.net",
            RecipientDsnFields: {
              Action: "delayed",
              Status: "4.2.2",
              RemoteMta: "dns; store.example.net",
              DiagnosticCode: "smtp; 452 4.2.2 Mailbox full",
              LastAttemptDate: new Date("2026-12-03T10:05:00Z"),
            },
          },
        ],
      }),
    );
    const added = (await outboxFiles()).filter((name) => !before.includes(name));
    const text = (await readFile(join(outbox(), added[0]!))).toString("latin1");
    expect(text).toContain("Subject: Delivery Status Notification (Delay)");
    expect(text).toContain("Reporting-MTA: dns; gateway.example.net\r\nArrival-Date: Thu, 03 Dec 2026 10:00:00 +0000\r\nX-Ticket: 42\r\n");
    expect(text).toContain("Final-Recipient: rfc822; a@example.net\r\nAction: delayed\r\nStatus: 4.0.0\r\nDiagnostic-Code: smtp; 450 4.0.0 The message could not be delivered for\r\n now.\r\n");
    expect(text).toContain(
      "Final-Recipient: rfc822; b@example.net\r\nAction: delayed\r\nStatus: 4.2.2\r\nRemote-MTA: dns; store.example.net\r\nDiagnostic-Code: smtp; 452 4.2.2 Mailbox full\r\nLast-Attempt-Date: Thu, 03 Dec 2026 10:05:00 +0000\r\n",
    );
  });

  it("answers MessageRejected for an unknown message, a stranger recipient and an unverified sender", async () => {
    const id = await send("a@example.net", "third");
    await processed(id);
    const before = await outboxFiles();
    expect(await errorOf(ses.send(bounce("0123456789abcdefghijklmnopqrstuv01234567")))).toMatchObject({
      name: "MessageRejected",
      status: 400,
      message: expect.stringContaining("was not received in the last 24 hours"),
    });
    expect(await errorOf(ses.send(bounce("not-an-id")))).toMatchObject({ name: "MessageRejected" });
    expect(
      await errorOf(ses.send(bounce(id, { BouncedRecipientInfoList: [{ Recipient: "z@example.net", BounceType: "DoesNotExist" }] }))),
    ).toMatchObject({ name: "MessageRejected", message: expect.stringContaining("z@example.net is not a recipient") });
    expect(await errorOf(ses.send(bounce(id, { BounceSender: "bounces@unverified.example" })))).toEqual({
      name: "MessageRejected",
      status: 400,
      message: "Email address is not verified. The following identities failed the check in region US-EAST-1: bounces@unverified.example",
    });
    // Another account's identity without a policy that lets this one use it.
    expect(await errorOf(ses.send(bounce(id, { BounceSenderArn: PARTNER_ARN, BounceSender: "bounces@partner.example" })))).toMatchObject({
      name: "MessageRejected",
    });
    expect(outboxFiles()).resolves.toEqual(before);
  });

  it("checks its parameters with SES's errors", async () => {
    const id = await send("a@example.net", "fourth");
    expect(
      await errorOf(ses.send(bounce(id, { BouncedRecipientInfoList: [{ Recipient: "a@example.net", BounceType: "Gone" as never }] }))),
    ).toMatchObject({ name: "ValidationError", message: expect.stringContaining("Member must satisfy enum value set: [DoesNotExist") });
    expect(await errorOf(ses.send(bounce(id, { BouncedRecipientInfoList: [{ Recipient: "a@example.net" }] })))).toMatchObject({
      name: "InvalidParameterValue",
      message: "BouncedRecipientInfoList.member.1: either BounceType or RecipientDsnFields is required",
    });
    expect(await errorOf(ses.send(bounce(id, { BouncedRecipientInfoList: [] })))).toMatchObject({ name: "InvalidParameterValue" });
    expect(
      await errorOf(
        ses.send(bounce(id, { BouncedRecipientInfoList: [{ Recipient: "a@example.net", RecipientDsnFields: { Action: "failed", Status: "5.1" } }] })),
      ),
    ).toMatchObject({ name: "InvalidParameterValue", message: expect.stringContaining("RecipientDsnFields.Status") });
    expect(
      await errorOf(ses.send(bounce(id, { MessageDsn: { ReportingMta: "dns; x", ExtensionFields: [{ Name: "Bad Name", Value: "v" }] } }))),
    ).toMatchObject({ name: "InvalidParameterValue", message: expect.stringContaining("MessageDsn.ExtensionFields.member.1.Name") });
  });

  it("uses another account's identity when its policy allows ses:SendBounce, and not when a statement denies it", async () => {
    const id = await send("a@example.net", "fifth");
    await processed(id);
    await partner.send(new VerifyDomainIdentityCommand({ Domain: "partner.example" }));
    const statement = (effect: string, extra: Record<string, unknown> = {}) => ({
      Effect: effect,
      Principal: { AWS: `arn:aws:iam::${OWN}:root` },
      Action: ["ses:SendBounce"],
      Resource: PARTNER_ARN,
      ...extra,
    });
    const viaPartner = bounce(id, { BounceSenderArn: PARTNER_ARN, BounceSender: "bounces@partner.example" });
    await partner.send(new PutIdentityPolicyCommand({ Identity: "partner.example", PolicyName: "bounce", Policy: JSON.stringify({ Version: "2012-10-17", Statement: [statement("Allow")] }) }));
    expect((await ses.send(viaPartner)).MessageId).toMatch(/^[0-9a-v]{40}$/);
    // A condition on the From address that the sender does not meet: the Allow does not apply.
    await partner.send(
      new PutIdentityPolicyCommand({
        Identity: "partner.example",
        PolicyName: "bounce",
        Policy: JSON.stringify({ Statement: [statement("Allow", { Condition: { StringLike: { "ses:FromAddress": "noreply@*" } } })] }),
      }),
    );
    expect(await errorOf(ses.send(viaPartner))).toMatchObject({ name: "AccessDenied", status: 403, message: expect.stringContaining("ses:SendBounce") });
    await partner.send(
      new PutIdentityPolicyCommand({
        Identity: "partner.example",
        PolicyName: "bounce",
        Policy: JSON.stringify({ Statement: [statement("Allow"), statement("Deny", { Action: "ses:*" })] }),
      }),
    );
    expect(await errorOf(ses.send(viaPartner))).toMatchObject({ name: "AccessDenied" });
    // The ARN's identity must be the sender's: its address or its domain.
    expect(await errorOf(ses.send(bounce(id, { BounceSenderArn: PARTNER_ARN, BounceSender: "bounces@example.net" })))).toMatchObject({
      name: "MessageRejected",
    });
  });

  it("an address identity verifies its own address only", async () => {
    const id = await send("a@example.net", "sixth");
    await processed(id);
    await ses.send(new VerifyEmailIdentityCommand({ EmailAddress: "desk@other.example" }));
    expect((await ses.send(bounce(id, { BounceSender: "desk@other.example" }))).MessageId).toBeDefined();
    expect(await errorOf(ses.send(bounce(id, { BounceSender: "else@other.example" })))).toMatchObject({ name: "MessageRejected" });
  });
});

describe("the account's sending pause", () => {
  it("holds SendBounce, Bounce actions and failure DSNs, and the traces say why", async () => {
    const kept = await send("a@example.net", "seventh");
    await processed(kept);
    await ses.send(new UpdateAccountSendingEnabledCommand({ Enabled: false }));
    try {
      const before = await outboxFiles();
      expect(await errorOf(ses.send(bounce(kept)))).toEqual({ name: "AccountSendingPausedException", status: 400, message: "Account sending paused." });

      const refused = await processed(await send("refuse@bounce.example", "eighth"));
      expect(refused.area).toBe("done");
      const action = refused.trace!.rules[0]!.actions[0]!;
      expect(action).toMatchObject({ type: "Bounce", outcome: "done", detail: { dsnTo: "sender@example.org", dsn: "not sent: account sending is paused (UpdateAccountSendingEnabled)" } });

      const dead = await processed(await send("broken@bounce.example", "ninth"));
      expect(dead.area).toBe("dead");
      expect(dead.dsnNotSent).toBe("account sending is paused (UpdateAccountSendingEnabled)");
      expect(await outboxFiles()).toEqual(before);
    } finally {
      await ses.send(new UpdateAccountSendingEnabledCommand({ Enabled: true }));
    }
    const before = await outboxFiles();
    const refused = await processed(await send("refuse@bounce.example", "tenth"));
    expect(refused.trace!.rules[0]!.actions[0]!.detail).toMatchObject({ file: expect.stringContaining("outbox") });
    expect((await outboxFiles()).length).toBe(before.length + 1);
  });
});
