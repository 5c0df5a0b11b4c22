// ScanEnabled with real engines: SpamAssassin's spamd and ClamAV's clamd on private ports,
// through the built daemon; the verdicts in the Lambda event and in the stored headers.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import type { Server, Socket } from "node:net";
import { join } from "node:path";
import nodemailer from "nodemailer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scratch, startDaemonProcess, testConfig } from "../helpers/daemon.js";
import type { DaemonProcess } from "../helpers/daemon.js";
import { EICAR, GTUBE, freePort, hasEngines, startClamd, startRspamd, startSpamd } from "../helpers/scanners.js";
import type { Engine } from "../helpers/scanners.js";

const run = hasEngines || process.env.CI === "true" ? describe : describe.skip;
const FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:verdicts";
const TOPIC = "arn:aws:sns:us-east-1:123456789012:scanned";

let work: { dir: string; remove(): Promise<void> };
const engines: Engine[] = [];
const daemons: DaemonProcess[] = [];

const RULES = {
  Metadata: { Name: "scanning" },
  Rules: [
    {
      Name: "scanned",
      Enabled: true,
      ScanEnabled: true,
      Recipients: ["scan@example.com"],
      Actions: [{ LambdaAction: { FunctionArn: FUNCTION } }, { SNSAction: { TopicArn: TOPIC } }, { S3Action: { BucketName: "scanned" } }],
    },
    { Name: "plain", Enabled: true, Recipients: ["plain@example.com"], Actions: [{ S3Action: { BucketName: "plain" } }] },
    // No SNS action: a large message is over its 150 KB limit.
    { Name: "large", Enabled: true, ScanEnabled: true, Recipients: ["large@example.com"], Actions: [{ LambdaAction: { FunctionArn: FUNCTION } }, { S3Action: { BucketName: "large" } }] },
  ],
};

async function start(name: string, scanning: Record<string, unknown>): Promise<DaemonProcess> {
  const dir = join(work.dir, name);
  await mkdir(dir, { recursive: true });
  const handler = join(dir, "verdicts.mjs");
  await writeFile(handler, "export const handler = async () => ({});\n");
  await writeFile(join(dir, "rules.json"), JSON.stringify(RULES));
  const daemon = await startDaemonProcess(
    testConfig(dir, { rules: join(dir, "rules.json"), identities: ["example.com"], local: { lambdaHandlers: { [FUNCTION]: handler } }, scanning }),
    dir,
  );
  daemons.push(daemon);
  return daemon;
}

async function deliver(daemon: DaemonProcess, to: string, content: { text: string; attachment?: string }): Promise<string> {
  const smtp = nodemailer.createTransport({ host: "127.0.0.1", port: daemon.smtpPort, secure: false, ignoreTLS: true });
  const info = await smtp.sendMail({
    from: "alice@example.org",
    to,
    subject: "scan me",
    text: content.text,
    ...(content.attachment ? { attachments: [{ filename: "eicar.com", content: content.attachment }] } : {}),
  });
  smtp.close();
  const id = /^250 Ok (\S+)/.exec(info.response)![1]!;
  await daemon.waitForLog((line) => line.event === "processing.message-completed" && line.messageId === id, 30_000);
  return id;
}

async function lambdaVerdicts(daemon: DaemonProcess, id: string): Promise<{ spam: string; virus: string }> {
  const lines = (await readFile(join(daemon.dir, "data", "lambda", "verdicts.jsonl"), "utf8")).trim().split("\n").map((line) => JSON.parse(line));
  const record = lines.map((line) => line.event.Records[0].ses).find((ses) => ses.mail.messageId === id);
  return { spam: record.receipt.spamVerdict.status, virus: record.receipt.virusVerdict.status };
}

async function notificationVerdicts(daemon: DaemonProcess, id: string): Promise<{ spam: string; virus: string }> {
  const lines = (await readFile(join(daemon.dir, "data", "sns", "scanned.jsonl"), "utf8")).trim().split("\n").map((line) => JSON.parse(JSON.parse(line).message));
  const notification = lines.find((message) => message.mail.messageId === id);
  return { spam: notification.receipt.spamVerdict.status, virus: notification.receipt.virusVerdict.status };
}

async function storedHeaders(daemon: DaemonProcess, bucket: string, id: string): Promise<string[]> {
  const text = await readFile(join(daemon.dir, "data", "s3", bucket, id), "latin1");
  return text.slice(0, text.indexOf("\r\n\r\n")).split("\r\n").filter((line) => !/^\s/.test(line)).map((line) => line.slice(0, line.indexOf(":")));
}

beforeAll(async () => {
  work = await scratch("receiptd-scanning-");
  if (!hasEngines && process.env.CI !== "true") return;
  engines.push(...(await Promise.all([startClamd(join(work.dir, "clamd")), startSpamd(), startRspamd(join(work.dir, "rspamd"))])));
}, 120_000);
afterAll(async () => {
  for (const daemon of daemons) await daemon.kill("SIGTERM");
  for (const engine of engines) await engine.stop();
  await work?.remove();
});

run("scanning with spamd and clamd", () => {
  it("gives SES's verdicts for a clean message, GTUBE and EICAR, in the Lambda event and the X-SES headers", async () => {
    const daemon = await start("engines", { spamd: engines[1]!.address, clamd: engines[0]!.address });
    const clean = await deliver(daemon, "scan@example.com", { text: "Lunch on Thursday?\n" });
    const spam = await deliver(daemon, "scan@example.com", { text: `${GTUBE}\n` });
    const virus = await deliver(daemon, "scan@example.com", { text: "see attachment\n", attachment: EICAR });
    expect(await lambdaVerdicts(daemon, clean)).toEqual({ spam: "PASS", virus: "PASS" });
    expect(await lambdaVerdicts(daemon, spam)).toEqual({ spam: "FAIL", virus: "PASS" });
    expect((await lambdaVerdicts(daemon, virus)).virus).toBe("FAIL");
    // The SNS notification says the same.
    expect(await notificationVerdicts(daemon, spam)).toEqual({ spam: "FAIL", virus: "PASS" });
    expect((await notificationVerdicts(daemon, virus)).virus).toBe("FAIL");
    // SES's order on top of the stored object, with the verdicts the event has.
    expect((await storedHeaders(daemon, "scanned", spam)).slice(0, 4)).toEqual(["Return-Path", "Received", "X-SES-Spam-Verdict", "X-SES-Virus-Verdict"]);
    const object = await readFile(join(daemon.dir, "data", "s3", "scanned", spam), "latin1");
    expect(object).toContain("\r\nX-SES-Spam-Verdict: FAIL\r\nX-SES-Virus-Verdict: PASS\r\n");

    // A message no scanning rule matches is not scanned: no X-SES headers, no scan counted.
    const before = await (await fetch(`http://127.0.0.1:${daemon.adminPort}/metrics`)).text();
    const plain = await deliver(daemon, "plain@example.com", { text: `${GTUBE}\n` });
    expect(await storedHeaders(daemon, "plain", plain)).not.toContain("X-SES-Spam-Verdict");
    const after = await (await fetch(`http://127.0.0.1:${daemon.adminPort}/metrics`)).text();
    const scans = (text: string) => text.split("\n").filter((line) => line.startsWith("receiptd_scans_total{")).join("\n");
    expect(scans(after)).toBe(scans(before));
    expect(after).toMatch(/^receiptd_scans_total\{engine="spamd",verdict="FAIL"\} 1$/m);
    expect((await fetch(`http://127.0.0.1:${daemon.adminPort}/readyz`)).status).toBe(200);
  }, 120_000);
});

run("scanning with rspamd", () => {
  it("takes the spam verdict from rspamd's score and required_score (and clamd's over its Unix socket)", async () => {
    const daemon = await start("rspamd", { rspamd: engines[2]!.address, clamd: engines[0]!.socket });
    const clean = await deliver(daemon, "scan@example.com", { text: "Lunch on Thursday?\n" });
    const spam = await deliver(daemon, "scan@example.com", { text: `${GTUBE}\n` });
    expect((await lambdaVerdicts(daemon, clean)).spam).toBe("PASS");
    expect(await lambdaVerdicts(daemon, spam)).toEqual({ spam: "FAIL", virus: "PASS" });
    // Pinged at start: rspamd's /ping and clamd's PING answer.
    expect((await fetch(`http://127.0.0.1:${daemon.adminPort}/readyz`)).status).toBe(200);
  }, 120_000);
});

run("scanning a large message", () => {
  it("streams a 38 MB message (a 28 MB attachment, base64) to clamd from the spool: scanning adds far less memory than the message", async () => {
    const attachment = Buffer.alloc(28 * 1024 * 1024, "receiptd large attachment line\n").toString("latin1");
    // The peak resident memory a large message costs a daemon, from a warmed-up baseline.
    const growth = async (name: string, scanning: Record<string, unknown>) => {
      const daemon = await start(name, scanning);
      const rss = async (field: "VmRSS" | "VmHWM") => {
        const status = await readFile(`/proc/${daemon.child.pid}/status`, "utf8");
        return Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)![1]) * 1024;
      };
      await deliver(daemon, "large@example.com", { text: "warm up\n" });
      const before = await rss("VmRSS");
      const id = await deliver(daemon, "large@example.com", { text: "big\n", attachment });
      return { grown: (await rss("VmHWM")) - before, verdicts: await lambdaVerdicts(daemon, id) };
    };
    const scanned = await growth("large-scanned", { spamd: engines[1]!.address, clamd: engines[0]!.address });
    const unscanned = await growth("large-unscanned", {});
    // Over spamd's limit it is not sent there (GRAY); clamd reads it whole and finds it clean.
    expect(scanned.verdicts).toEqual({ spam: "GRAY", virus: "PASS" });
    expect(unscanned.verdicts).toEqual({ spam: "GRAY", virus: "GRAY" });
    expect(scanned.grown - unscanned.grown).toBeLessThan(attachment.length / 4);
  }, 180_000);
});

run("scanning and crashes", () => {
  it("uses the journaled verdicts after kill -9 between the scan and the first action, and asks no engine again", async () => {
    const dir = join(work.dir, "crash");
    await mkdir(dir, { recursive: true });
    const release = join(dir, "release");
    const handler = join(dir, "held.mjs");
    // Holds the message in its first action until the test lets it go.
    await writeFile(
      handler,
      `import { existsSync } from "node:fs";\nexport const handler = () => new Promise((resolve) => { const t = setInterval(() => { if (existsSync(${JSON.stringify(release)})) { clearInterval(t); resolve({}); } }, 20); });\n`,
    );
    const rules = {
      Metadata: { Name: "crash" },
      Rules: [{ Name: "held", Enabled: true, ScanEnabled: true, Actions: [{ LambdaAction: { FunctionArn: FUNCTION, InvocationType: "RequestResponse" } }, { S3Action: { BucketName: "after" } }] }],
    };
    await writeFile(join(dir, "rules.json"), JSON.stringify(rules));
    const config = (scanning: Record<string, unknown>) =>
      testConfig(dir, { rules: join(dir, "rules.json"), identities: ["example.com"], local: { lambdaHandlers: { [FUNCTION]: handler } }, scanning });
    const first = await startDaemonProcess(config({ spamd: engines[1]!.address, clamd: engines[0]!.address }), dir);
    const smtp = nodemailer.createTransport({ host: "127.0.0.1", port: first.smtpPort, secure: false, ignoreTLS: true });
    const info = await smtp.sendMail({ from: "alice@example.org", to: "held@example.com", subject: "spam", text: `${GTUBE}\n` });
    smtp.close();
    const id = /^250 Ok (\S+)/.exec(info.response)![1]!;
    await first.waitForLog((line) => line.event === "processing.message-scanned" && line.messageId === id, 30_000);
    await first.kill("SIGKILL");

    // Engines that cannot answer: a scan now would give PROCESSING_FAILED.
    const down = `127.0.0.1:${await freePort()}`;
    const second = await startDaemonProcess(config({ spamd: down, clamd: down, timeoutMs: 500 }), dir);
    daemons.push(second);
    await writeFile(release, "");
    await second.waitForLog((line) => line.event === "processing.message-completed" && line.messageId === id, 30_000);
    expect(second.logs.some((line) => line.event === "processing.message-scanned")).toBe(false);
    const object = await readFile(join(dir, "data", "s3", "after", id), "latin1");
    expect(object).toContain("\r\nX-SES-Spam-Verdict: FAIL\r\nX-SES-Virus-Verdict: PASS\r\n");
  }, 120_000);
});

describe("scanning when the engines fail", () => {
  it("gives PROCESSING_FAILED for an engine that is down or silent past the deadline, and the message completes", async () => {
    const silent: Server = createServer((socket: Socket) => socket.on("data", () => undefined));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const down = await freePort();
    try {
      const daemon = await start("failing", { spamd: `127.0.0.1:${down}`, clamd: `127.0.0.1:${(silent.address() as { port: number }).port}`, timeoutMs: 500 });
      const started = Date.now();
      const id = await deliver(daemon, "scan@example.com", { text: "hello\n" });
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(await lambdaVerdicts(daemon, id)).toEqual({ spam: "PROCESSING_FAILED", virus: "PROCESSING_FAILED" });
      const warned = daemon.logs.filter((line) => line.event === "scanning.failed").map((line) => line.engine);
      expect(warned.sort()).toEqual(["clamd", "spamd"]);
      // /readyz names an engine that does not answer its ping.
      const ready = await fetch(`http://127.0.0.1:${daemon.adminPort}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.text()).toMatch(/^(spamd at 127\.0\.0\.1:\d+|clamd at 127\.0\.0\.1:\d+) does not answer/);
    } finally {
      silent.close();
    }
  }, 60_000);
});
