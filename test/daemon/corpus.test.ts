// The shared corpus of real-world and broken messages through replay and through the SMTP
// path of the daemon: no crash, every message either accepted and processed or refused with
// a clear per-message answer.
import { execFile } from "node:child_process";
import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { statSync } from "node:fs";
import nodemailer from "nodemailer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT, scratch, startDaemonProcess, testConfig } from "../helpers/daemon.js";
import type { DaemonProcess } from "../helpers/daemon.js";

const corpus = resolve(dirname(fileURLToPath(import.meta.url)), "../../../shared/corpus");
const present = statSync(corpus, { throwIfNoEntry: false })?.isDirectory() ?? false;
const run = promisify(execFile);

async function emlFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile() && entry.name.endsWith(".eml"))
    .map((entry) => join(entry.parentPath, entry.name))
    .sort();
}

describe.skipIf(!present)("the shared corpus", () => {
  let work: { dir: string; remove(): Promise<void> };
  let files: string[];
  beforeAll(async () => {
    work = await scratch("receiptd-corpus-");
    files = await emlFiles(corpus);
  });
  afterAll(async () => {
    await work.remove();
  });

  it("replays every message, with a per-file error where one cannot be read", async () => {
    const rules = join(work.dir, "catch-all.json");
    await writeFile(rules, JSON.stringify({ Rules: [{ Name: "all", Enabled: true, Actions: [{ S3Action: { BucketName: "corpus" } }] }] }));
    const { stdout } = await run(
      process.execPath,
      [join(ROOT, "dist/cli/main.js"), "replay", corpus, "--rules", rules, "--identity", "example.com", "--to", "info@example.com", "--json"],
      { maxBuffer: 64 * 1024 * 1024 },
    ).catch((error: { code: number; stdout: string }) => {
      // Exit code 1 means some file was unreadable; anything else is a failure of the run.
      expect(error.code).toBe(1);
      return error;
    });
    const lines = stdout.trim().split("\n").map((line) => JSON.parse(line) as { file: string; error?: string; accepted?: string[] });
    expect(lines.map((line) => line.file)).toEqual(files);
    for (const line of lines) {
      if (line.error) expect(line.error, line.file).toMatch(/\S/);
      else expect(line.accepted, line.file).toEqual(["info@example.com"]);
    }
  });

  it("takes every message over SMTP without the daemon failing, and processes each one accepted", async () => {
    const dir = join(work.dir, "smtp");
    await mkdir(dir, { recursive: true });
    const rules = join(dir, "rules.json");
    await writeFile(rules, JSON.stringify({ Rules: [{ Name: "all", Enabled: true, Actions: [{ S3Action: { BucketName: "corpus" } }] }] }));
    const daemon: DaemonProcess = await startDaemonProcess(testConfig(dir, { rules, identities: ["example.com"] }), dir);
    try {
      const transport = nodemailer.createTransport({ host: "127.0.0.1", port: daemon.smtpPort, secure: false, pool: true, maxConnections: 4 });
      const results = await Promise.all(
        files.map((file) =>
          readFile(file).then((raw) =>
            transport.sendMail({ envelope: { from: "corpus@example.net", to: ["info@example.com"] }, raw }).then(
              (info) => ({ file, reply: info.response }),
              (error: Error) => ({ file, reply: error.message }),
            ),
          ),
        ),
      );
      transport.close();
      const accepted = results.flatMap(({ reply }) => /^250 Ok ([0-9a-v]{40})$/.exec(reply)?.[1] ?? []);
      for (const { file, reply } of results) {
        // Anything not accepted must have been answered with an SMTP refusal, not a dropped connection.
        if (!reply.startsWith("250 ")) expect(reply, file).toMatch(/\b[45]\d\d\b/);
      }
      expect(accepted.length).toBeGreaterThan(files.length * 0.9);
      for (const id of accepted) {
        await daemon.waitForLog((line) => line.event === "processing.message-completed" && line.messageId === id, 20_000);
      }
      expect((await readdir(join(dir, "data", "s3", "corpus"))).sort()).toEqual([...accepted].sort());
      expect(daemon.child.exitCode).toBeNull();
    } finally {
      await daemon.kill("SIGTERM");
    }
  });
});
