// A real SES rule set with a ConnectAction, through `receiptd serve`: it loads, the mail is
// accepted, and the action fails by name, dead-lettering the message; the failure DSN that
// follows, refused with a 5xx, is tried once (docs/behaviour.md §8).
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import nodemailer from "nodemailer";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { scratch, startDaemonProcess, testConfig } from "../helpers/daemon.js";
import type { DaemonProcess } from "../helpers/daemon.js";
import { startSmtpServer } from "../helpers/smtp-server.js";

const INSTANCE = "arn:aws:connect:us-east-1:123456789012:instance/a1b2c3d4-5678-90ab-cdef-EXAMPLE11111";
let work: { dir: string; remove(): Promise<void> };
const daemons: DaemonProcess[] = [];

beforeAll(async () => {
  work = await scratch("receiptd-connect-");
});
afterEach(async () => {
  await Promise.all(daemons.splice(0).map((d) => d.kill("SIGKILL")));
});
afterAll(async () => {
  await work.remove();
});

async function writeRules(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  const rules = join(dir, "rules.json");
  await writeFile(
    rules,
    JSON.stringify({
      Metadata: { Name: "contact-center" },
      Rules: [
        {
          Name: "to-connect",
          Enabled: true,
          Recipients: ["support@example.com"],
          Actions: [
            { AddHeaderAction: { HeaderName: "X-Queue", HeaderValue: "support" } },
            { ConnectAction: { InstanceARN: INSTANCE, IAMRoleARN: "arn:aws:iam::123456789012:role/ses-connect" } },
            { S3Action: { BucketName: "after-connect" } },
          ],
        },
      ],
    }),
  );
  return rules;
}

async function start(name: string, extra: Record<string, unknown> = {}): Promise<DaemonProcess> {
  const dir = join(work.dir, name);
  const rules = await writeRules(dir);
  const daemon = await startDaemonProcess(testConfig(dir, { rules, identities: ["example.com"], ...extra }), dir);
  daemons.push(daemon);
  return daemon;
}

async function send(daemon: DaemonProcess): Promise<string> {
  const info = await nodemailer
    .createTransport({ host: "127.0.0.1", port: daemon.smtpPort, secure: false })
    .sendMail({ from: "carol@example.net", to: "support@example.com", subject: "Help", text: "Please call me." });
  const messageId = /^250 Ok (\S+)/.exec(info.response)?.[1] ?? "";
  expect(messageId).not.toBe("");
  return messageId;
}

describe("a rule set with a ConnectAction", () => {
  it("loads, accepts the mail, records the named permanent failure and dead-letters the message", async () => {
    const daemon = await start("serve");
    const messageId = await send(daemon);

    const failed = await daemon.waitForLog((line) => line.event === "processing.action-failed" && line.messageId === messageId);
    expect(failed).toMatchObject({ action: "Connect", rule: "to-connect", failure: "permanent" });
    expect(failed.error).toMatch(/^ConnectAction is not supported by receiptd: /);
    const dead = await daemon.waitForLog((line) => line.event === "processing.message-dead-lettered" && line.messageId === messageId);
    expect(dead.reason).toContain(
      `ConnectAction is not supported by receiptd: it has no Amazon Connect back end, so no email contact can be started in ${INSTANCE}`,
    );

    const record = JSON.parse(await readFile(join(daemon.dir, "data", "spool", "dead", `${messageId}.trace.json`), "utf8"));
    const actions = record.trace.rules[0].actions as { type: string; outcome: string; error?: string }[];
    expect(actions.map((a) => `${a.type}:${a.outcome}`)).toEqual(["AddHeader:done", "Connect:failed", "S3:skipped"]);
    expect(actions[1]!.error).toMatch(/^ConnectAction is not supported by receiptd: /);
  });

  it("sends the failure DSN once when the sender's side refuses it with a 5xx, and logs it given up", async () => {
    const attempts: string[] = [];
    const relay = await startSmtpServer({
      rcptReply: (address) => {
        attempts.push(address);
        return { code: 550, text: "5.1.1 carol does not take bounces" };
      },
    });
    try {
      // A short backoff, so that a retry, were there one, would come well within the wait below.
      const daemon = await start("dsn-refused", {
        bounce: { relay: `smtp://127.0.0.1:${relay.port}` },
        processing: { backoffInitialMs: 20, backoffMaxMs: 40 },
      });
      const messageId = await send(daemon);
      const given = await daemon.waitForLog((line) => line.event === "processing.dsn-failed" && line.messageId === messageId);
      expect(given).toMatchObject({ to: "carol@example.net", attempt: 1, final: true, failure: "permanent" });
      expect(given.error).toContain("550 5.1.1 carol does not take bounces");
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(attempts).toEqual(["carol@example.net"]);
      expect(daemon.logs.filter((line) => line.event === "processing.dsn-failed")).toHaveLength(1);
      await readFile(join(daemon.dir, "data", "spool", "dead", `${messageId}.trace.json`), "utf8");
    } finally {
      await relay.close();
    }
  });
});
