// Background failures of actions (an Event Lambda that throws) as the admin port's /metrics shows them.
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import nodemailer from "nodemailer";
import { afterAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/config.js";
import { startDaemon } from "../../src/daemon/daemon.js";
import { createLogger } from "../../src/ops/log.js";
import { ROOT, scratch, testConfig } from "../helpers/daemon.js";
import { Capture } from "./capture.js";

const FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:throwing";
let work: { dir: string; remove(): Promise<void> } | undefined;
afterAll(() => work?.remove());

describe("receiptd_action_background_failures_total", () => {
  it("counts an Event handler that throws, by action type", async () => {
    work = await scratch("receiptd-background-");
    const dir = join(work.dir, "daemon");
    await mkdir(dir, { recursive: true });
    const rules = join(dir, "rules.json");
    await writeFile(
      rules,
      JSON.stringify({
        Metadata: { Name: "background" },
        Rules: [
          {
            Name: "notify",
            Enabled: true,
            Recipients: ["events@example.com"],
            Actions: [{ LambdaAction: { FunctionArn: FUNCTION, InvocationType: "Event" } }],
          },
        ],
      }),
    );
    const config = parseConfig(
      testConfig(dir, { rules, local: { lambdaHandlers: { [FUNCTION]: join(ROOT, "test/fixtures/handlers/throwing.mjs") } } }),
      { source: "test", baseDir: dir },
    );
    const out = new Capture();
    const daemon = await startDaemon(config, { logger: createLogger({ stream: out, format: "json" }) });
    try {
      const metrics = async () => (await fetch(`http://127.0.0.1:${daemon.adminAddress()!.port}/metrics`)).text();
      expect(await metrics()).toMatch(/^receiptd_action_background_failures_total\{type="Lambda"\} 0$/m);

      const smtp = nodemailer.createTransport({ host: "127.0.0.1", port: daemon.addresses()[0]!.port, secure: false, ignoreTLS: true });
      await smtp.sendMail({ from: "a@example.org", to: "events@example.com", subject: "hi", text: "x" });
      await expect
        .poll(() => out.records().some((record) => record.event === "actions.background_failed"), { timeout: 10_000 })
        .toBe(true);

      const text = await metrics();
      expect(text).toMatch(/^# TYPE receiptd_action_background_failures_total counter$/m);
      expect(text).toMatch(/^receiptd_action_background_failures_total\{type="Lambda"\} 1$/m);
      expect(text).toMatch(/^receiptd_action_background_failures_total\{type="SNS"\} 0$/m);
      // The action itself succeeded, as it does on SES (reported once invoke has returned).
      await expect.poll(metrics, { timeout: 10_000 }).toMatch(/^receiptd_actions_total\{type="Lambda",outcome="done"\} 1$/m);
    } finally {
      await daemon.stop(0);
    }
  });
});
