// Scanning's cost: processed messages per second for a ScanEnabled rule with spamd and clamd
// (Debian's, started here on private ports) beside the same run without scanning, and the scan
// time per message. Run with `npm run bench:scan`; needs /usr/sbin/spamd and /usr/sbin/clamd.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { Writable } from "node:stream";
import nodemailer from "nodemailer";
import { parseConfig } from "../dist/config/config.js";
import { startDaemon } from "../dist/daemon/daemon.js";
import { createLogger } from "../dist/ops/log.js";

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 300);
const EICAR = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
const dir = await mkdtemp(join(tmpdir(), "receiptd-bench-scan-"));

const freePort = () =>
  new Promise((resolve) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
async function listening(port) {
  for (let i = 0; i < 300; i++) {
    const up = await new Promise((resolve) => {
      const socket = connect(port, "127.0.0.1", () => {
        socket.destroy();
        resolve(true);
      });
      socket.on("error", () => resolve(false));
    });
    if (up) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`nothing listens on ${port}`);
}

process.stderr.write("starting clamd and spamd ...\n");
const clamDir = join(dir, "clamd");
await mkdir(clamDir);
await writeFile(join(clamDir, "test.hdb"), `${createHash("md5").update(EICAR).digest("hex")}:${EICAR.length}:Bench-EICAR\n`);
const clamPort = await freePort();
await writeFile(join(clamDir, "clamd.conf"), `Foreground yes\nDatabaseDirectory ${clamDir}\nTCPSocket ${clamPort}\nTCPAddr 127.0.0.1\n`);
const spamPort = await freePort();
const engines = [
  spawn("/usr/sbin/clamd", ["-c", join(clamDir, "clamd.conf")], { stdio: "ignore", detached: true }),
  spawn("/usr/sbin/spamd", [`--listen=127.0.0.1:${spamPort}`, "--allowed-ips=127.0.0.1", "-x", "-L", "--max-children=4", "-s", "stderr"], { stdio: "ignore", detached: true }),
];
await Promise.all([listening(clamPort), listening(spamPort)]);

await writeFile(
  join(dir, "rules.json"),
  JSON.stringify({ Metadata: { Name: "bench" }, Rules: [{ Name: "scan", Enabled: true, ScanEnabled: true, Actions: [{ S3Action: { BucketName: "bench" } }] }] }),
);

async function run(mode, scanning) {
  const data = join(dir, mode);
  const config = parseConfig(
    {
      hostname: "mx.bench.test",
      dataDir: data,
      rules: join(dir, "rules.json"),
      identities: ["example.com"],
      smtp: { listen: [{ host: "127.0.0.1", port: 0 }], reverseDns: false },
      authentication: { enabled: false },
      admin: null,
      api: null,
      scanning,
    },
    { source: "bench", baseDir: dir, env: {} },
  );
  let completed = 0;
  let allDone;
  const finished = new Promise((resolve) => (allDone = resolve));
  const scans = [];
  const log = new Writable({
    write(chunk, _encoding, done) {
      for (const line of chunk.toString("utf8").split("\n")) {
        if (line.includes('"processing.message-completed"') && ++completed === MESSAGES) allDone();
        if (line.includes('"processing.message-scanned"')) scans.push(JSON.parse(line).durationMs);
      }
      done();
    },
  });
  const daemon = await startDaemon(config, { logger: createLogger({ stream: log, format: "json", level: "info" }) });
  const smtp = nodemailer.createTransport({ host: "127.0.0.1", port: daemon.addresses()[0].port, secure: false, ignoreTLS: true, pool: true, maxConnections: 4 });
  const started = performance.now();
  await Promise.all(
    Array.from({ length: MESSAGES }, (_, i) =>
      smtp.sendMail({ from: "a@example.org", to: `user${i}@example.com`, subject: `message ${i}`, text: `Hello number ${i}.\n`.repeat(200) }),
    ),
  );
  await finished;
  const seconds = (performance.now() - started) / 1000;
  smtp.close();
  await daemon.stop(1000);
  scans.sort((a, b) => a - b);
  return { rate: MESSAGES / seconds, scans };
}

const plain = await run("plain", {});
const virusOnly = await run("clamd", { clamd: `127.0.0.1:${clamPort}` });
const scanned = await run("scanned", { spamd: `127.0.0.1:${spamPort}`, clamd: `127.0.0.1:${clamPort}` });
const pct = (list, p) => list[Math.min(list.length - 1, Math.floor((p / 100) * list.length))];
console.log(`${MESSAGES} messages of 4 KB over SMTP (4 connections), one ScanEnabled rule storing to the local S3:`);
console.log(`  without engines (verdicts GRAY): ${plain.rate.toFixed(0)} msg/s processed`);
console.log(`  with clamd:                      ${virusOnly.rate.toFixed(0)} msg/s processed (ratio ${(virusOnly.rate / plain.rate).toFixed(2)}); scan median ${pct(virusOnly.scans, 50)} ms, p95 ${pct(virusOnly.scans, 95)} ms`);
console.log(`  with spamd and clamd:            ${scanned.rate.toFixed(0)} msg/s processed (ratio ${(scanned.rate / plain.rate).toFixed(2)}); scan median ${pct(scanned.scans, 50)} ms, p95 ${pct(scanned.scans, 95)} ms (both engines at once)`);
console.log("  (SpamAssassin's own rule run is most of the scan time: about 150 ms of CPU per message here)");
for (const engine of engines) {
  try {
    process.kill(-engine.pid, "SIGKILL");
  } catch {
    // gone
  }
}
await rm(dir, { recursive: true, force: true });
