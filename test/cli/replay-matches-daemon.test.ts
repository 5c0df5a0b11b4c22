// docs/behaviour.md §5: the daemon and `receiptd replay` make the stored message in one function,
// so the same .eml with the same envelope and client gives the same S3 object, SNS notification
// and Lambda event, byte for byte but for the message ID and the times.
import { execFile } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import nodemailer from "nodemailer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT, scratch, startDaemonProcess, testConfig } from "../helpers/daemon.js";
import type { DaemonProcess } from "../helpers/daemon.js";

const run = promisify(execFile);
const TOPIC = "arn:aws:sns:us-east-1:123456789012:inbound";
const INDEXER = "arn:aws:lambda:us-east-1:123456789012:function:index-message";
const ENVELOPE = { from: "bounce@sender.test", to: ["user@example.com"] };
const HELO = "client.sender.test";
const SAMPLES = ["samples/bare-lf.eml", "samples/multipart.eml", "samples/non-ascii.eml"];

let work: { dir: string; remove(): Promise<void> };
let daemon: DaemonProcess | undefined;

beforeAll(async () => {
  work = await scratch("receiptd-replay-daemon-");
});
afterAll(async () => {
  await daemon?.kill("SIGKILL");
  await work.remove();
});

/** The ID wherever it appears, Received's date and every ISO timestamp; processing time is 0. */
function masked(text: string, messageId: string): string {
  return text
    .replaceAll(messageId, "<ID>")
    .replace(/; \w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000 \(UTC\)/g, "; <DATE>")
    .replace(/\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z/g, "<TIME>")
    .replace(/"processingTimeMillis":\d+/g, '"processingTimeMillis":0');
}

interface Outputs {
  s3: string;
  sns: string;
  lambda: string;
}

/** What the local back end holds for one message, masked. */
async function outputs(dataDir: string, messageId: string): Promise<Outputs> {
  const s3 = (await readFile(join(dataDir, "s3", "archive", "in", messageId))).toString("latin1");
  const published = (await readFile(join(dataDir, "sns", "inbound.jsonl"), "utf8")).trim().split("\n");
  const notification = published.map((line) => (JSON.parse(line) as { message: string }).message).find((m) => m.includes(messageId));
  const invoked = (await readFile(join(dataDir, "lambda", "index-message.jsonl"), "utf8")).trim().split("\n");
  const event = invoked.map((line) => JSON.stringify((JSON.parse(line) as { event: unknown }).event)).find((e) => e.includes(messageId));
  expect(notification, "SNS notification").toBeDefined();
  expect(event, "Lambda event").toBeDefined();
  return { s3: masked(s3, messageId), sns: masked(notification!, messageId), lambda: masked(event!, messageId) };
}

describe("replay and the daemon store the same message", () => {
  it("gives the same S3 object, SNS content and Lambda event for the same .eml, envelope and client", async () => {
    const rules = join(work.dir, "rules.json");
    await writeFile(
      rules,
      JSON.stringify({
        Metadata: { Name: "same" },
        Rules: [
          {
            Name: "all",
            Enabled: true,
            ScanEnabled: true,
            Recipients: ["example.com"],
            Actions: [
              { S3Action: { BucketName: "archive", ObjectKeyPrefix: "in/" } },
              { SNSAction: { TopicArn: TOPIC, Encoding: "UTF-8" } },
              { LambdaAction: { FunctionArn: INDEXER, InvocationType: "Event" } },
            ],
          },
        ],
      }),
    );
    const local = { lambdaHandlers: { [INDEXER]: join(ROOT, "rules/handlers/index-message.mjs") } };

    const daemonDir = join(work.dir, "daemon");
    await mkdir(daemonDir);
    daemon = await startDaemonProcess(testConfig(daemonDir, { rules, local }), daemonDir);
    const transport = nodemailer.createTransport({ host: "127.0.0.1", port: daemon.smtpPort, secure: false, name: HELO });
    const sent: string[] = [];
    for (const sample of SAMPLES) {
      const info = await transport.sendMail({ envelope: ENVELOPE, raw: await readFile(join(ROOT, sample)) });
      const id = /^250 Ok ([0-9a-v]{40})$/.exec(info.response)?.[1];
      expect(id, info.response).toBeDefined();
      await daemon.waitForLog((line) => line.event === "processing.message-completed" && line.messageId === id);
      sent.push(id!);
    }

    const replayDir = join(work.dir, "replay");
    await mkdir(replayDir);
    const replayConfig = join(replayDir, "receiptd.json");
    await writeFile(replayConfig, JSON.stringify({ hostname: "mx.receiptd.test", dataDir: join(replayDir, "data"), local }));
    const { stdout } = await run(
      process.execPath,
      [
        join(ROOT, "dist/cli/main.js"),
        "replay",
        ...SAMPLES,
        "--rules",
        rules,
        "--from",
        ENVELOPE.from,
        "--to",
        ENVELOPE.to[0]!,
        "--client-ip",
        "127.0.0.1",
        "--helo",
        HELO,
        "--executor",
        "local",
        "--config",
        replayConfig,
        "--json",
      ],
      { cwd: ROOT },
    );
    const replayed = stdout
      .trim()
      .split("\n")
      .map((line) => (JSON.parse(line) as { messageId: string }).messageId);
    expect(replayed).toHaveLength(SAMPLES.length);

    for (const [i, sample] of SAMPLES.entries()) {
      const fromDaemon = await outputs(join(daemonDir, "data"), sent[i]!);
      const fromReplay = await outputs(join(replayDir, "data"), replayed[i]!);
      expect(fromReplay.s3, `${sample}: S3 object`).toBe(fromDaemon.s3);
      expect(fromReplay.sns, `${sample}: SNS notification`).toBe(fromDaemon.sns);
      expect(fromReplay.lambda, `${sample}: Lambda event`).toBe(fromDaemon.lambda);

      // And it is the message SES would store: the real Return-Path on top, the forged one gone, CRLF.
      expect(fromReplay.s3.startsWith(`Return-Path: <${ENVELOPE.from}>\r\nReceived: from ${HELO} (unknown [127.0.0.1]) by mx.receiptd.test with SMTP id <ID> for user@example.com; <DATE>\r\nX-SES-Spam-Verdict: GRAY\r\nX-SES-Virus-Verdict: GRAY\r\n`)).toBe(true);
      expect(fromReplay.s3.match(/^Return-Path:/gim)).toHaveLength(1);
      expect(fromReplay.s3).not.toMatch(/[^\r]\n/);
      expect(JSON.parse(fromReplay.sns).mail.commonHeaders.returnPath).toBe(ENVELOPE.from);
    }
  });
});
