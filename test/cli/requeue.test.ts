// `receiptd messages requeue`: a dead letter back through the running daemon's admin port,
// resuming at the action that failed; what the journal records done does not run again.
import { execFile } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import nodemailer from "nodemailer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT, freePort, scratch, startDaemonProcess, testConfig } from "../helpers/daemon.js";
import type { DaemonProcess } from "../helpers/daemon.js";

const run = promisify(execFile);
const FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:fixable";
const TOPIC = "arn:aws:sns:us-east-1:123456789012:seen";

let work: { dir: string; remove(): Promise<void> };
let daemon: DaemonProcess;
let daemonDir: string;
let handler: string;

async function requeue(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [join(ROOT, "dist/cli/main.js"), "messages", "requeue", ...args, "--config", join(daemonDir, "receiptd.json")]);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

async function send(to: string): Promise<string> {
  const smtp = nodemailer.createTransport({ host: "127.0.0.1", port: daemon.smtpPort, secure: false, ignoreTLS: true });
  const info = await smtp.sendMail({ from: "alice@example.org", to, subject: "hello", text: "hello\n" });
  smtp.close();
  return /^250 Ok (\S+)/.exec(info.response)![1]!;
}

const published = async () => (await readFile(join(daemonDir, "data", "sns", `${TOPIC.split(":").pop()}.jsonl`), "utf8").catch(() => "")).split("\n").filter(Boolean).length;

beforeAll(async () => {
  work = await scratch("receiptd-requeue-");
  daemonDir = join(work.dir, "daemon");
  await mkdir(daemonDir, { recursive: true });
  handler = join(work.dir, "fixable.mjs");
  const rules = {
    Metadata: { Name: "live" },
    Rules: [
      {
        Name: "pipeline",
        Enabled: true,
        Recipients: ["example.com"],
        Actions: [{ SNSAction: { TopicArn: TOPIC } }, { LambdaAction: { FunctionArn: FUNCTION, InvocationType: "RequestResponse" } }, { S3Action: { BucketName: "kept" } }],
      },
    ],
  };
  await writeFile(join(work.dir, "rules.json"), JSON.stringify(rules));
  // The CLI finds the admin port in the configuration, so it needs a port of its own.
  const port = await freePort();
  // The handler module does not exist yet: the Lambda action fails for good, and the message is dead-lettered.
  daemon = await startDaemonProcess(
    testConfig(daemonDir, {
      rules: join(work.dir, "rules.json"),
      identities: ["example.com"],
      local: { lambdaHandlers: { [FUNCTION]: handler } },
      admin: { host: "127.0.0.1", port },
    }),
    daemonDir,
  );
}, 30_000);
afterAll(async () => {
  await daemon?.kill("SIGTERM");
  await work?.remove();
});

describe("receiptd messages requeue", () => {
  it("resumes a dead letter at its failed action once the handler is fixed, without running the done ones again", async () => {
    const id = await send("a@example.com");
    await daemon.waitForLog((line) => line.event === "processing.message-dead-lettered" && line.messageId === id);
    expect(await published()).toBe(1);

    // Not fixed yet: requeued, dead again.
    expect(await requeue(id)).toMatchObject({ code: 0, stdout: `requeued  ${id}\n` });
    await daemon.waitForLog((line) => line.event === "processing.message-dead-lettered" && line.messageId === id && line !== daemon.logs.find((l) => l.event === "processing.message-dead-lettered"));

    await writeFile(handler, "export const handler = async () => ({ disposition: 'CONTINUE' });\n");
    // Its actions are journaled done: the active rule set is refused for it.
    const refused = await requeue(id, "--active-rule-set");
    expect(refused.code).toBe(1);
    expect(refused.stdout).toContain("action(s) journaled as done under the rule set it was accepted under");

    expect(await requeue("--dead", "--since", "1h", "--json")).toMatchObject({ code: 0, stdout: `${JSON.stringify({ requeued: [id], refused: [] })}\n` });
    await daemon.waitForLog((line) => line.event === "processing.message-completed" && line.messageId === id);
    expect(await readFile(join(daemonDir, "data", "s3", "kept", id))).toBeTruthy();
    // The SNS publish before the failure ran once, however many times the message went round.
    expect(await published()).toBe(1);

    const done = await requeue(id);
    expect(done.code).toBe(1);
    expect(done.stdout).toContain(`refused   ${id}: ${id} is not a dead letter`);
    expect((await requeue("not-an-id")).code).toBe(2);
    const metrics = await (await fetch(`http://127.0.0.1:${daemon.adminPort}/metrics`)).text();
    expect(metrics).toMatch(/^receiptd_messages_requeued_total 2$/m);
  });
});
