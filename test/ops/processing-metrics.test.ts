// What /metrics and the log tell an operator after a known sequence of messages, on a real daemon.
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import nodemailer from "nodemailer";
import { afterAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/config.js";
import { startDaemon } from "../../src/daemon/daemon.js";
import { createLogger } from "../../src/ops/log.js";
import { ROOT, scratch, testConfig } from "../helpers/daemon.js";
import { Capture } from "./capture.js";

const SLOW = "arn:aws:lambda:us-east-1:123456789012:function:slow";
const INSTANCE = "arn:aws:connect:us-east-1:123456789012:instance/11111111-2222-3333-4444-555555555555";
let work: { dir: string; remove(): Promise<void> } | undefined;
afterAll(() => work?.remove());

const RULES = {
  Metadata: { Name: "operations" },
  Rules: [
    { Name: "archive", Enabled: true, Recipients: ["inbox@example.com", "team@example.com"], Actions: [{ S3Action: { BucketName: "archive" } }] },
    {
      Name: "stopper",
      Enabled: true,
      Recipients: ["stop@example.com"],
      Actions: [{ LambdaAction: { FunctionArn: SLOW, InvocationType: "RequestResponse" } }, { StopAction: { Scope: "RuleSet" } }],
    },
    { Name: "never-reached", Enabled: true, Recipients: ["stop@example.com"], Actions: [{ S3Action: { BucketName: "after-stop" } }] },
    {
      Name: "to-connect",
      Enabled: true,
      Recipients: ["support@example.com"],
      Actions: [{ ConnectAction: { InstanceARN: INSTANCE, IAMRoleARN: "arn:aws:iam::123456789012:role/ses-connect" } }],
    },
  ],
};

/** The value of one sample of the exposition text, or undefined when it is not there. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe("processing as /metrics and the log show it", () => {
  it("counts messages by outcome, rules by name, dead letters by reason, actions and authentications; logs each message's end", async () => {
    work = await scratch("receiptd-processing-metrics-");
    const dir = join(work.dir, "daemon");
    await mkdir(dir, { recursive: true });
    const rules = join(dir, "rules.json");
    await writeFile(rules, JSON.stringify(RULES));
    const config = parseConfig(
      testConfig(dir, {
        rules,
        identities: ["example.com"],
        authentication: { enabled: true, dnsTimeoutMs: 500 },
        local: { lambdaHandlers: { [SLOW]: join(ROOT, "test/fixtures/handlers/slow.mjs") } },
      }),
      { source: "test", baseDir: dir },
    );
    const out = new Capture();
    // The slow handler takes 2 s; nothing else here comes near a second.
    const daemon = await startDaemon(config, { logger: createLogger({ stream: out, format: "json" }), slowActionMs: 1000 });
    try {
      const metrics = async () => (await fetch(`http://127.0.0.1:${daemon.adminAddress()!.port}/metrics`)).text();
      const before = await metrics();
      // Present before anything happened, so that increase() sees the first one.
      expect(sample(before, 'receiptd_messages_processed_total{outcome="dead"}')).toBe(0);
      expect(sample(before, 'receiptd_messages_dead_lettered_total{reason="permanent_failure"}')).toBe(0);

      const smtp = nodemailer.createTransport({ host: "127.0.0.1", port: daemon.addresses()[0]!.port, secure: false, ignoreTLS: true });
      const send = async (to: string[]) => {
        const info = await smtp.sendMail({ from: "alice@example.org", to, subject: "hi", text: "x" });
        return /^250 Ok (\S+)/.exec(info.response)![1]!;
      };
      const twoRecipients = await send(["inbox@example.com", "team@example.com"]);
      await send(["inbox@example.com"]);
      await send(["team@example.com"]);
      const stopped = await send(["stop@example.com"]);
      const dead = await send(["support@example.com"]);
      // A refused RCPT: its log line has the reason as a field, not only in the reply.
      await expect(smtp.sendMail({ from: "alice@example.org", to: ["nobody@example.net"], subject: "x", text: "x" })).rejects.toThrow(/550/);

      const ended = () =>
        out.records().filter((record) => ["processing.message-completed", "processing.message-stopped", "processing.message-dead-lettered"].includes(record.event as string));
      await expect.poll(() => ended().length, { timeout: 20_000 }).toBe(5);

      const byId = new Map(ended().map((record) => [record.messageId, record]));
      expect(byId.get(twoRecipients)).toMatchObject({ event: "processing.message-completed", mailFrom: "alice@example.org", recipients: 2, rules: ["archive"], outcome: "done" });
      expect(byId.get(stopped)).toMatchObject({ event: "processing.message-stopped", mailFrom: "alice@example.org", recipients: 1, rules: ["stopper"], outcome: "stopped" });
      expect(byId.get(dead)).toMatchObject({
        event: "processing.message-dead-lettered",
        mailFrom: "alice@example.org",
        recipients: 1,
        rules: ["to-connect"],
        outcome: "dead",
        cause: "permanent_failure",
      });

      const slow = out.records().filter((record) => record.event === "processing.action_slow");
      expect(slow).toEqual([expect.objectContaining({ messageId: stopped, action: "Lambda", rule: "stopper" })]);
      expect(slow[0]!.durationMs).toBeGreaterThanOrEqual(1000);

      const refused = out.records().find((record) => record.event === "smtp.rcpt_refused");
      expect(refused).toMatchObject({ recipient: "nobody@example.net", reason: "relaying-denied" });

      const text = await metrics();
      expect(text).toMatch(/^# TYPE receiptd_messages_processed_total counter$/m);
      expect(sample(text, 'receiptd_messages_processed_total{outcome="done"}')).toBe(3);
      expect(sample(text, 'receiptd_messages_processed_total{outcome="stopped"}')).toBe(1);
      expect(sample(text, 'receiptd_messages_processed_total{outcome="dead"}')).toBe(1);
      // Once per message, though the first message matched "archive" with two recipients.
      expect(sample(text, 'receiptd_rule_matches_total{rule="archive"}')).toBe(3);
      expect(sample(text, 'receiptd_rule_matches_total{rule="stopper"}')).toBe(1);
      expect(sample(text, 'receiptd_rule_matches_total{rule="to-connect"}')).toBe(1);
      expect(sample(text, 'receiptd_rule_matches_total{rule="never-reached"}')).toBeUndefined();
      expect(sample(text, 'receiptd_messages_dead_lettered_total{reason="permanent_failure"}')).toBe(1);
      expect(sample(text, 'receiptd_messages_dead_lettered_total{reason="retry_window_ended"}')).toBe(0);
      expect(sample(text, 'receiptd_actions_total{type="S3",outcome="done"}')).toBe(3);
      expect(sample(text, 'receiptd_actions_total{type="Lambda",outcome="done"}')).toBe(1);
      expect(sample(text, 'receiptd_actions_total{type="Connect",outcome="failed"}')).toBe(1);
      expect(sample(text, 'receiptd_smtp_refused_total{stage="rcpt",reason="relaying_denied"}')).toBe(1);
      // Every accepted message was authenticated once; the verdicts depend on this machine's DNS.
      expect(text).toMatch(/^# TYPE receiptd_auth_seconds histogram$/m);
      expect(sample(text, "receiptd_auth_seconds_count")).toBe(5);
      for (const check of ["spf", "dkim", "dmarc"]) {
        const counts = [...text.matchAll(new RegExp(`^receiptd_auth_results_total\\{check="${check}",verdict="[A-Z_]+"\\} (\\d+)$`, "gm"))];
        expect(counts.reduce((sum, match) => sum + Number(match[1]), 0)).toBe(5);
      }
    } finally {
      await daemon.stop(0);
    }
  });
});
