// docs/behaviour.md §5: the daemon and `receiptd replay` make the stored message in one function,
// so the same .eml with the same envelope and client gives the same S3 object, SNS notification
// and Lambda event, byte for byte but for the message ID and the times.
import { execFile } from "node:child_process";
import { statSync } from "node:fs";
import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
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
const SAMPLES = ["samples/bare-lf.eml", "samples/multipart.eml", "samples/non-ascii.eml"].map((file) => join(ROOT, file));
// The shared corpus of real-world and broken messages, where the checkout has it (as test/daemon/corpus.test.ts).
const CORPUS = resolve(dirname(fileURLToPath(import.meta.url)), "../../../shared/corpus");
const hasCorpus = statSync(CORPUS, { throwIfNoEntry: false })?.isDirectory() ?? false;

let work: { dir: string; remove(): Promise<void> };
const daemons: DaemonProcess[] = [];

beforeAll(async () => {
  work = await scratch("receiptd-replay-daemon-");
});
afterAll(async () => {
  await Promise.all(daemons.map((daemon) => daemon.kill("SIGKILL")));
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

/**
 * Sends `files` to a daemon with nodemailer and replays them with the same envelope and client,
 * both on the local back end; compares what each stored. Files the daemon refuses are skipped.
 */
async function compareDaemonAndReplay(name: string, files: string[]): Promise<number> {
  const dir = join(work.dir, name);
  await mkdir(dir);
  const rules = join(dir, "rules.json");
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

  const daemonDir = join(dir, "daemon");
  await mkdir(daemonDir);
  const daemon = await startDaemonProcess(testConfig(daemonDir, { rules, local }), daemonDir);
  daemons.push(daemon);
  const transport = nodemailer.createTransport({ host: "127.0.0.1", port: daemon.smtpPort, secure: false, name: HELO });
  const sent: { file: string; id: string }[] = [];
  for (const file of files) {
    const reply = await transport.sendMail({ envelope: ENVELOPE, raw: await readFile(file) }).then(
      (info) => info.response,
      (error: Error) => error.message,
    );
    const id = /^250 Ok ([0-9a-v]{40})$/.exec(reply)?.[1];
    if (!id) continue;
    await daemon.waitForLog((line) => line.event === "processing.message-completed" && line.messageId === id);
    sent.push({ file, id });
  }

  const replayDir = join(dir, "replay");
  await mkdir(replayDir);
  const replayConfig = join(replayDir, "receiptd.json");
  await writeFile(replayConfig, JSON.stringify({ hostname: "mx.receiptd.test", dataDir: join(replayDir, "data"), local }));
  const { stdout } = await run(
    process.execPath,
    [
      join(ROOT, "dist/cli/main.js"),
      "replay",
      ...sent.map((message) => message.file),
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
    { cwd: ROOT, maxBuffer: 64 * 1024 * 1024 },
  );
  const replayed = stdout
    .trim()
    .split("\n")
    .map((line) => (JSON.parse(line) as { messageId: string }).messageId);
  expect(replayed).toHaveLength(sent.length);

  for (const [i, { file: sample, id }] of sent.entries()) {
    const fromDaemon = await outputs(join(daemonDir, "data"), id);
    const fromReplay = await outputs(join(replayDir, "data"), replayed[i]!);
    expect(fromReplay.s3, `${sample}: S3 object`).toBe(fromDaemon.s3);
    expect(fromReplay.sns, `${sample}: SNS notification`).toBe(fromDaemon.sns);
    expect(fromReplay.lambda, `${sample}: Lambda event`).toBe(fromDaemon.lambda);

    // And it is the message SES would store: the real Return-Path on top, the forged one gone, CRLF.
    const top =
      `Return-Path: <${ENVELOPE.from}>\r\n` +
      `Received: from ${HELO} (unknown [127.0.0.1]) by mx.receiptd.test with SMTP id <ID> for user@example.com; <DATE>\r\n` +
      "X-SES-Spam-Verdict: GRAY\r\nX-SES-Virus-Verdict: GRAY\r\n";
    expect(fromReplay.s3.startsWith(top), `${sample}: top headers`).toBe(true);
    const headerEnd = fromReplay.s3.indexOf("\r\n\r\n");
    const headerSection = headerEnd === -1 ? fromReplay.s3 : fromReplay.s3.slice(0, headerEnd);
    expect(headerSection.match(/^Return-Path:/gim), `${sample}: Return-Path fields`).toHaveLength(1);
    expect(fromReplay.s3).not.toMatch(/[^\r]\n/);
    expect(JSON.parse(fromReplay.sns).mail.commonHeaders.returnPath).toBe(ENVELOPE.from);
  }
  return sent.length;
}

describe("replay and the daemon store the same message", () => {
  it("gives the same S3 object, SNS content and Lambda event for the same .eml, envelope and client", async () => {
    expect(await compareDaemonAndReplay("samples", SAMPLES)).toBe(SAMPLES.length);
  });

  it.skipIf(!hasCorpus)("does so for the shared corpus of real-world and broken messages", async () => {
    const entries = await readdir(CORPUS, { recursive: true, withFileTypes: true });
    const files = entries.filter((e) => e.isFile() && e.name.endsWith(".eml")).map((e) => join(e.parentPath, e.name)).sort();
    expect(await compareDaemonAndReplay("corpus", files)).toBeGreaterThan(files.length * 0.9);
  }, 120_000);
});
