// `receiptd replay --spool` and `receiptd diff --spool`: past mail from a running daemon's
// spool, replayed as it was received, so the events and objects are the daemon's own.
import { execFile } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import nodemailer from "nodemailer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT, scratch, startDaemonProcess, testConfig } from "../helpers/daemon.js";
import type { DaemonProcess } from "../helpers/daemon.js";

const run = promisify(execFile);
const RULES = {
  Metadata: { Name: "live" },
  Rules: [
    { Name: "only-b", Enabled: true, Recipients: ["b@example.com"], Actions: [{ AddHeaderAction: { HeaderName: "X-For-B", HeaderValue: "yes" } }, { S3Action: { BucketName: "for-b" } }] },
    { Name: "archive", Enabled: true, Recipients: ["example.com"], Actions: [{ S3Action: { BucketName: "archive", ObjectKeyPrefix: "all/" } }] },
  ],
};

let work: { dir: string; remove(): Promise<void> };
let daemon: DaemonProcess;
let dataDir: string;
const ids: string[] = [];

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [join(ROOT, "dist/cli/main.js"), ...args], { cwd: work.dir });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

beforeAll(async () => {
  work = await scratch("receiptd-replay-spool-");
  await writeFile(join(work.dir, "rules.json"), JSON.stringify(RULES));
  await writeFile(join(work.dir, "archive-only.json"), JSON.stringify({ ...RULES, Rules: RULES.Rules.slice(1) }));
  const daemonDir = join(work.dir, "daemon");
  await mkdir(daemonDir, { recursive: true });
  dataDir = join(daemonDir, "data");
  daemon = await startDaemonProcess(testConfig(daemonDir, { rules: join(work.dir, "rules.json"), identities: ["example.com"] }), daemonDir);
  const smtp = nodemailer.createTransport({ host: "127.0.0.1", port: daemon.smtpPort, secure: false, ignoreTLS: true });
  for (const to of [["a@example.com"], ["a@example.com", "b@example.com"]]) {
    const info = await smtp.sendMail({ from: "alice@example.org", to, subject: `to ${to.join(", ")}`, text: "hello\n" });
    const id = /^250 Ok (\S+)/.exec(info.response)![1]!;
    await daemon.waitForLog((line) => line.event === "processing.message-completed" && line.messageId === id);
    ids.push(id);
  }
  smtp.close();
}, 30_000);
afterAll(async () => {
  await daemon?.kill("SIGTERM");
  await work?.remove();
});

describe("replay and diff over the spool", () => {
  it("replays each message as received: the local executor writes the very objects the daemon wrote", async () => {
    const replayData = join(work.dir, "replayed");
    await writeFile(join(work.dir, "replay.json"), JSON.stringify({ dataDir: replayData, hostname: "mx.receiptd.test" }));
    const replayed = await cli("replay", "--spool", dataDir, "--rules", "rules.json", "--executor", "local", "--config", "replay.json", "--json");
    expect(replayed.code).toBe(0);
    const lines = replayed.stdout.trim().split("\n").map((line) => JSON.parse(line));
    // Oldest first, under their own IDs, with the recipients they were received for.
    expect(lines.map((line) => [line.file, line.messageId, line.envelope])).toEqual([
      [`spool:${ids[0]}`, ids[0], { mailFrom: "alice@example.org", recipients: ["a@example.com"] }],
      [`spool:${ids[1]}`, ids[1], { mailFrom: "alice@example.org", recipients: ["a@example.com", "b@example.com"] }],
    ]);
    for (const key of [`archive/all/${ids[0]}`, `archive/all/${ids[1]}`, `for-b/${ids[1]}`]) {
      expect(await readFile(join(replayData, "s3", key))).toEqual(await readFile(join(dataDir, "s3", key)));
    }
  });

  it("takes --since, and refuses the options that would rewrite how a message arrived", async () => {
    expect((await cli("replay", "--spool", join(dataDir, "spool"), "--rules", "rules.json", "--json", "--since", "1h")).stdout.trim().split("\n")).toHaveLength(2);
    const future = new Date(Date.now() + 60_000).toISOString();
    expect(await cli("replay", "--spool", dataDir, "--rules", "rules.json", "--json", "--since", future)).toMatchObject({ code: 0, stdout: "" });
    const refused = await cli("replay", "--spool", dataDir, "--rules", "rules.json", "--from", "x@example.org");
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("--from does not go with --spool");
    expect((await cli("replay", "--spool", work.dir, "--rules", "rules.json")).stderr).toContain("neither a spool directory nor a data directory");
  });

  it("diffs two rule sets over the spool: the message for b changes, the other does not", async () => {
    const same = await cli("diff", "rules.json", "rules.json", "--spool", dataDir);
    expect(same.code).toBe(0);
    const changed = await cli("diff", "rules.json", "archive-only.json", "--spool", dataDir, "--json");
    expect(changed.code).toBe(1);
    const diffs = changed.stdout.trim().split("\n").map((line) => JSON.parse(line));
    expect(diffs.map((diff) => diff.messageId)).toEqual([ids[1]]);
    expect(JSON.stringify(diffs[0].changes)).toContain("only-b");
  });
});
