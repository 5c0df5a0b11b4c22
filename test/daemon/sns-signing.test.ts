// `receiptd serve` with the local SNS and HTTP subscribers: the envelopes are signed, their
// certificate and unsubscribe links are on the daemon's own admin port.
import { createVerify } from "node:crypto";
import { mkdir } from "node:fs/promises";
import type { Server } from "node:http";
import { join } from "node:path";
import nodemailer from "nodemailer";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { scratch, startDaemonProcess, testConfig } from "../helpers/daemon.js";
import type { DaemonProcess } from "../helpers/daemon.js";
import { awsStringToSign, startSubscriber } from "../helpers/sns-subscriber.js";

let work: { dir: string; remove(): Promise<void> };
const daemons: DaemonProcess[] = [];
const servers: Server[] = [];

beforeAll(async () => {
  work = await scratch("receiptd-sns-signing-");
});
afterEach(async () => {
  await Promise.all(daemons.splice(0).map((d) => d.kill("SIGKILL")));
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});
afterAll(async () => {
  await work.remove();
});

const idOf = (response: string) => /^250 Ok ([0-9a-v]{40})$/.exec(response)?.[1] ?? "";
const INBOUND = "arn:aws:sns:us-east-1:123456789012:inbound";

describe("receiptd serve: signed local SNS", () => {
  it("posts SignatureVersion 2 envelopes whose certificate and UnsubscribeURL are on the admin port", async () => {
    const leaving = await startSubscriber(servers);
    const staying = await startSubscriber(servers);
    const dir = join(work.dir, "signed");
    await mkdir(dir, { recursive: true });
    const config = testConfig(dir);
    const daemon = await startDaemonProcess(
      {
        ...config,
        local: { ...(config.local as Record<string, unknown>), snsHttpSubscriptions: { "*": [leaving.url, staying.url] }, snsSignatureVersion: 2 },
      },
      dir,
    );
    daemons.push(daemon);
    const admin = `http://127.0.0.1:${daemon.adminPort}`;
    const send = async () => {
      const transport = nodemailer.createTransport({ host: "127.0.0.1", port: daemon.smtpPort, secure: false, tls: { rejectUnauthorized: false } });
      const info = await transport.sendMail({ from: "a@example.org", to: "info@example.com", subject: "hello", text: "x" });
      const messageId = idOf(info.response);
      await daemon.waitForLog((line) => line.event === "processing.message-completed" && line.messageId === messageId);
      return messageId;
    };
    const forInbound = (envelopes: Record<string, string>[]) => envelopes.filter((envelope) => envelope.TopicArn === INBOUND);

    const first = await send();
    await expect.poll(() => forInbound(leaving.envelopes).length, { timeout: 15_000 }).toBe(1);
    const envelope = forInbound(leaving.envelopes)[0]!;
    expect(JSON.parse(envelope.Message!)).toMatchObject({ mail: { messageId: first } });
    expect(envelope.SignatureVersion).toBe("2");
    expect(envelope.SigningCertURL!.startsWith(`${admin}/sns/SimpleNotificationService-`)).toBe(true);
    const certificate = await (await fetch(envelope.SigningCertURL!)).text();
    expect(createVerify("RSA-SHA256").update(awsStringToSign(envelope)).verify(certificate, envelope.Signature!, "base64")).toBe(true);
    expect(createVerify("RSA-SHA256").update(awsStringToSign({ ...envelope, Message: `${envelope.Message} ` })).verify(certificate, envelope.Signature!, "base64")).toBe(false);

    expect(envelope.UnsubscribeURL!.startsWith(`${admin}/sns/?Action=Unsubscribe&SubscriptionArn=`)).toBe(true);
    expect((await fetch(envelope.UnsubscribeURL!)).status).toBe(200);
    await send();
    await expect.poll(() => forInbound(staying.envelopes).length, { timeout: 15_000 }).toBe(2);
    // The other subscriber's delivery is done; give a wrong one to the leaving subscriber time to show.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(forInbound(leaving.envelopes)).toHaveLength(1);
    // Only that topic's subscription went: the same endpoint still gets the others.
    expect(leaving.envelopes.length).toBeGreaterThan(forInbound(leaving.envelopes).length);
  });
});
