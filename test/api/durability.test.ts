// kill -9 of `receiptd serve` during a burst of API writes: after a restart every acknowledged
// write is there, nothing is half-applied, and the MX acts on what was acknowledged.
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import {
  CreateReceiptRuleCommand,
  CreateReceiptRuleSetCommand,
  DescribeReceiptRuleSetCommand,
  SetActiveReceiptRuleSetCommand,
  VerifyDomainIdentityCommand,
} from "@aws-sdk/client-ses";
import nodemailer from "nodemailer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sesClient, storeModeConfig } from "../helpers/api-daemon.js";
import { scratch, startDaemonProcess } from "../helpers/daemon.js";
import type { DaemonProcess } from "../helpers/daemon.js";

let work: { dir: string; remove(): Promise<void> };
let config: Record<string, unknown>;
let daemon: DaemonProcess | null = null;

const client = sesClient;

beforeAll(async () => {
  work = await scratch("receiptd-durability-");
  config = storeModeConfig(work.dir);
  daemon = await startDaemonProcess(config, work.dir);
});
afterAll(async () => {
  if (daemon) await daemon.kill("SIGTERM");
  await work?.remove();
});

describe("durability of API writes", () => {
  it("keeps every acknowledged CreateReceiptRule across kill -9, and the MX uses them", async () => {
    const ses = client(daemon!.apiPort!);
    await ses.send(new CreateReceiptRuleSetCommand({ RuleSetName: "burst" }));
    await ses.send(new VerifyDomainIdentityCommand({ Domain: "example.net" }));
    await ses.send(new SetActiveReceiptRuleSetCommand({ RuleSetName: "burst" }));

    const acknowledged: string[] = [];
    const sent: string[] = [];
    let killed = false;
    const writers = Array.from({ length: 4 }, async (_, w) => {
      const writer = client(daemon!.apiPort!);
      for (let i = 0; i < 150 && !killed; i++) {
        const name = `w${w}-${i}`;
        sent.push(name);
        try {
          await writer.send(
            new CreateReceiptRuleCommand({
              RuleSetName: "burst",
              Rule: { Name: name, Enabled: true, Recipients: [`${name}@example.net`], Actions: [{ S3Action: { BucketName: "burst", ObjectKeyPrefix: `${name}/` } }] },
            }),
          );
          acknowledged.push(name);
        } catch {
          return;
        }
      }
    });
    // Mid-burst: once some writes are acknowledged, the process dies without any chance to clean up.
    while (acknowledged.length < 40) await new Promise((resolve) => setTimeout(resolve, 5));
    killed = true;
    expect(await daemon!.kill("SIGKILL")).toBe("SIGKILL");
    daemon = null;
    await Promise.all(writers);
    expect(acknowledged.length).toBeGreaterThanOrEqual(40);

    daemon = await startDaemonProcess(config, work.dir);
    const rules = (await client(daemon.apiPort!).send(new DescribeReceiptRuleSetCommand({ RuleSetName: "burst" }))).Rules!;
    const names = rules.map((rule) => rule.Name!);
    for (const name of acknowledged) expect(names).toContain(name);
    // An unacknowledged write may have landed (its answer was lost), but only a sent one, and whole.
    for (const rule of rules) {
      expect(sent).toContain(rule.Name);
      expect(rule).toEqual({
        Name: rule.Name,
        Enabled: true,
        ScanEnabled: false,
        TlsPolicy: "Optional",
        Recipients: [`${rule.Name}@example.net`],
        Actions: [{ S3Action: { BucketName: "burst", ObjectKeyPrefix: `${rule.Name}/` } }],
      });
    }

    const last = acknowledged.at(-1)!;
    const transport = nodemailer.createTransport({ host: "127.0.0.1", port: daemon.smtpPort, secure: false, ignoreTLS: true });
    const info = await transport.sendMail({ from: "sender@example.org", to: `${last}@example.net`, subject: "after the crash", text: "hi" });
    transport.close();
    const id = /250 Ok (\S+)/.exec(info.response)![1]!;
    const dir = join(work.dir, "data", "s3", "burst", last);
    for (let i = 0; i < 100 && !(await readdir(dir).catch(() => [] as string[])).includes(id); i++) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await readdir(dir)).toContain(id);
  }, 60_000);
});
