// `receiptd messages` against the spool of a running daemon, while it processes.
import { execFile } from "node:child_process";
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import nodemailer from "nodemailer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT, scratch, startDaemonProcess, testConfig } from "../helpers/daemon.js";
import type { DaemonProcess } from "../helpers/daemon.js";

const run = promisify(execFile);
const HELD = "arn:aws:lambda:us-east-1:123456789012:function:held";
const INSTANCE = "arn:aws:connect:us-east-1:123456789012:instance/11111111-2222-3333-4444-555555555555";
const RULES = {
  Metadata: { Name: "operations" },
  Rules: [
    { Name: "archive", Enabled: true, Recipients: ["inbox@example.com"], Actions: [{ S3Action: { BucketName: "archive" } }] },
    { Name: "slow", Enabled: true, Recipients: ["slow@example.com"], Actions: [{ LambdaAction: { FunctionArn: HELD, InvocationType: "RequestResponse" } }] },
    {
      Name: "to-connect",
      Enabled: true,
      Recipients: ["support@example.com"],
      Actions: [
        { S3Action: { BucketName: "archive" } },
        { ConnectAction: { InstanceARN: INSTANCE, IAMRoleARN: "arn:aws:iam::123456789012:role/ses-connect" } },
      ],
    },
  ],
};

let work: { dir: string; remove(): Promise<void> };
let daemon: DaemonProcess;
let configFile: string;
let lockPath: string;
let lockBefore: { text: string; mtimeMs: number; ino: number };
const ids: Record<string, string> = {};

async function messages(...args: string[]): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [join(ROOT, "dist/cli/main.js"), "messages", ...args, "--config", configFile], {
      encoding: "buffer",
      maxBuffer: 16 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr: stderr.toString() };
  } catch (error) {
    const failed = error as { code: number; stdout: Buffer; stderr: Buffer };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr.toString() };
  }
}

async function listIds(...filters: string[]): Promise<string[]> {
  const { code, stdout } = await messages("list", "--json", ...filters);
  expect(code).toBe(0);
  return stdout
    .toString()
    .split("\n")
    .filter(Boolean)
    .map((line) => (JSON.parse(line) as { messageId: string }).messageId);
}

async function lockFacts(): Promise<{ text: string; mtimeMs: number; ino: number }> {
  const facts = await stat(lockPath);
  return { text: await readFile(lockPath, "utf8"), mtimeMs: facts.mtimeMs, ino: facts.ino };
}

beforeAll(async () => {
  work = await scratch("receiptd-messages-");
  // The Lambda holds its message in queue/ until the test writes the release file.
  const handler = join(work.dir, "held.mjs");
  const release = JSON.stringify(join(work.dir, "release"));
  await writeFile(
    handler,
    `import { existsSync } from "node:fs";\nexport const handler = () => new Promise((resolve) => { const t = setInterval(() => { if (existsSync(${release})) { clearInterval(t); resolve({}); } }, 20); });\n`,
  );
  const rules = join(work.dir, "rules.json");
  await writeFile(rules, JSON.stringify(RULES));
  await mkdir(join(work.dir, "daemon"), { recursive: true });
  daemon = await startDaemonProcess(
    testConfig(join(work.dir, "daemon"), {
      rules,
      identities: ["example.com"],
      local: { lambdaHandlers: { [HELD]: handler } },
    }),
    join(work.dir, "daemon"),
  );
  configFile = join(work.dir, "daemon", "receiptd.json");
  lockPath = join(work.dir, "daemon", "data", "spool", "lock");
  lockBefore = await lockFacts();
  const smtp = nodemailer.createTransport({ host: "127.0.0.1", port: daemon.smtpPort, secure: false, ignoreTLS: true });
  const send = async (from: string, to: string) => {
    const info = await smtp.sendMail({ from, to, subject: `to ${to}`, text: "hello\n" });
    return /^250 Ok (\S+)/.exec(info.response)![1]!;
  };
  ids.archived = await send("alice@example.org", "inbox@example.com");
  ids.dead = await send("bob@example.net", "support@example.com");
  await daemon.waitForLog((line) => line.event === "processing.message-dead-lettered" && line.messageId === ids.dead);
  await daemon.waitForLog((line) => line.event === "processing.dsn-sent" && line.messageId === ids.dead);
  await daemon.waitForLog((line) => line.event === "processing.message-completed" && line.messageId === ids.archived);
  ids.slow = await send("alice@example.org", "slow@example.com");
}, 30_000);

afterAll(async () => {
  await daemon?.kill("SIGTERM");
  await work?.remove();
});

describe("receiptd messages on a running daemon's spool", () => {
  it("lists newest first, by each filter, including a message still being processed", async () => {
    // The held Lambda keeps the last message in queue/, mid-processing.
    expect(await listIds("--state", "queued")).toEqual([ids.slow]);
    expect(await listIds()).toEqual([ids.slow, ids.dead, ids.archived]);
    expect(await listIds("--state", "done")).toEqual([ids.archived]);
    expect(await listIds("--state", "dead")).toEqual([ids.dead]);
    expect(await listIds("--id", ids.dead!.slice(0, 6))).toEqual([ids.dead]);
    expect(await listIds("--from", "ALICE@example.org")).toEqual([ids.slow, ids.archived]);
    expect(await listIds("--from", "@example.net")).toEqual([ids.dead]);
    expect(await listIds("--to", "support@example.com")).toEqual([ids.dead]);
    expect(await listIds("--rule", "to-connect")).toEqual([ids.dead]);
    expect(await listIds("--since", "1h")).toHaveLength(3);
    expect(await listIds("--until", "2000-01-01T00:00:00Z")).toEqual([]);
    expect(await listIds("--since", new Date(Date.now() + 3_600_000).toISOString())).toEqual([]);

    const { stdout } = await messages("list");
    expect(stdout.toString()).toMatch(new RegExp(`dead\\s+${ids.dead}  <bob@example.net> -> support@example.com \\[to-connect\\]`));

    await writeFile(join(work.dir, "release"), "");
    await daemon.waitForLog((line) => line.event === "processing.message-completed" && line.messageId === ids.slow);
    expect(await listIds("--state", "done")).toEqual([ids.slow, ids.archived]);
  }, 60_000);

  it("lists while messages arrive and move from queue/ to done/ under it: each once, none lost", async () => {
    const smtp = nodemailer.createTransport({ host: "127.0.0.1", port: daemon.smtpPort, secure: false, ignoreTLS: true, pool: true, maxConnections: 4 });
    const sending = Promise.all(
      Array.from({ length: 30 }, (_, n) => smtp.sendMail({ from: "load@example.org", to: "inbox@example.com", subject: `load ${n}`, text: "x\n" })),
    );
    const listings: string[][] = [];
    let sent = false;
    void sending.then(() => (sent = true));
    while (!sent || listings.length < 2) listings.push(await listIds("--from", "load@example.org"));
    await sending;
    smtp.close();
    for (const listing of listings) expect(new Set(listing).size).toBe(listing.length);
    // Once sent, every message is queued or done; the listing finds each, wherever it is.
    expect(listings.at(-1)).toHaveLength(30);
  }, 60_000);

  it("shows a dead letter's failing action and its error, and a done message's actions", async () => {
    const dead = await messages("show", ids.dead!);
    expect(dead.code).toBe(0);
    const text = dead.stdout.toString();
    expect(text).toContain(`State     dead since `);
    expect(text).toContain("Envelope  MAIL FROM:<bob@example.net>\n          RCPT TO:<support@example.com>");
    expect(text).toMatch(/Client {4}127\.0\.0\.1, HELO \S+, reverse DNS none\nTLS {7}no/);
    expect(text).toMatch(/Rule set {2}"operations" snapshot [0-9a-f]{64}/);
    expect(text).toMatch(/rule "to-connect" \(#2\) for support@example\.com\n {4}S3 .*: done .*\n {4}Connect .*: failed \(permanent\): .+/);
    expect(text).toMatch(new RegExp(`DSN {7}a failure DSN to <bob@example\\.net>, written to (\\S+/outbox/\\S+\\.eml)\n`));
    const dsnFile = /written to (\S+)\n/.exec(text)![1]!;
    expect(await readFile(dsnFile, "latin1")).toContain(`<${ids.dead}.failure@mx.receiptd.test>`);

    const json = JSON.parse((await messages("show", ids.archived!.slice(0, 10), "--json")).stdout.toString()) as {
      area: string;
      ruleSet: string;
      trace: { end: string; rules: { name: string; actions: { type: string; outcome: string }[] }[] };
    };
    expect(json).toMatchObject({ area: "done", ruleSet: "operations", trace: { end: "completed", rules: [{ name: "archive", actions: [{ type: "S3", outcome: "done" }] }] } });
  });

  it("exports the message as received with its receipt headers: the S3 object byte for byte", async () => {
    for (const id of [ids.archived!, ids.dead!]) {
      const exported = await messages("export", id);
      expect(exported.code).toBe(0);
      const object = await readFile(join(work.dir, "daemon", "data", "s3", "archive", id));
      expect(exported.stdout.equals(object)).toBe(true);
      expect(exported.stdout.toString("latin1")).toMatch(/^Return-Path: <[^>]+>\r\nReceived: /);
    }
  });

  it("answers a missing message with 1 and bad usage with 2, and never touched the daemon's lock", async () => {
    expect((await messages("show", "0".repeat(40))).code).toBe(1);
    expect((await messages("list", "--state", "gone")).code).toBe(2);
    expect((await messages("show")).code).toBe(2);
    expect((await messages("export", ids.dead!, "--rule", "x")).code).toBe(2);
    expect(await lockFacts()).toEqual(lockBefore);
  });
});
