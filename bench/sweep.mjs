// The retention sweep: how long the daemon's hourly sweep of done/ takes with a day's worth of
// finished messages in it, when nothing has expired yet (most sweeps) and when everything has.
// The peer is the flat layout that spools kept before messages were filed by hour, which the
// sweep still handles (it reads each message's receipt time), measured on the same messages in
// the same run. Run with `npm run bench:sweep`; BENCH_SWEEP_MESSAGES sets the count.
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, rename, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { newMessageId } from "../dist/mail/message-id.js";
import { Spool } from "../dist/spool/spool.js";

const MESSAGES = Number(process.env.BENCH_SWEEP_MESSAGES ?? 20_000);
const DAY_MS = 24 * 60 * 60 * 1000;
const BODY = Buffer.alloc(10 * 1024, "x");

async function* message(id) {
  yield Buffer.from(`From: a@example.org\r\nTo: info@example.com\r\nSubject: ${id}\r\n\r\n`);
  yield BODY;
}

/** A spool with MESSAGES finished messages in done/, filed by hour as the daemon files them. */
async function filledSpool(dir) {
  // Syncs make filling slow and are not what is measured.
  const spool = await Spool.open({ dir, fsync: false });
  const snapshot = await spool.writer.saveSnapshot({ ruleSet: { name: "bench", rules: [] }, identities: { addresses: [], domains: ["example.com"] } });
  const receivedAt = new Date().toISOString();
  for (let i = 0; i < MESSAGES; i++) {
    const id = newMessageId(randomBytes);
    const state = {
      messageId: id,
      receivedAt,
      envelope: { mailFrom: "a@example.org", recipients: ["info@example.com"] },
      client: { ip: "192.0.2.10", helo: "mail.example.org", reverseDns: null, tls: false },
      verdicts: { spam: "DISABLED", virus: "DISABLED", spf: "DISABLED", dkim: "DISABLED", dmarc: "DISABLED" },
      snapshot,
    };
    await spool.writer.store(state, message(id));
    await spool.queue.complete(id, { messageId: id, rules: [], end: "completed", outcomes: [], prependedHeaders: [] });
    if (i % 5000 === 4999) process.stderr.write(`  ${i + 1}/${MESSAGES} messages\n`);
  }
  return spool;
}

/** Moves the messages out of their hour directories into done/ itself, as older spools kept them. */
async function flatten(dir) {
  const done = join(dir, "done");
  for (const hour of (await readdir(done)).filter((name) => !name.startsWith("traces-"))) {
    for (const name of await readdir(join(done, hour))) await rename(join(done, hour, name), join(done, name));
    await rm(join(done, hour), { recursive: true });
  }
}

async function timedSweep(spool, now) {
  const started = performance.now();
  const deleted = await spool.queue.sweep(now);
  return { ms: performance.now() - started, deleted };
}

const rows = [];
function row(layout, sweep, { ms, deleted }) {
  rows.push({ layout, sweep, ms: ms.toFixed(1), deleted, "µs per message": ((ms * 1000) / MESSAGES).toFixed(1) });
}

const root = await mkdtemp(join(tmpdir(), "receiptd-bench-sweep-"));
try {
  process.stderr.write(`filling a spool with ${MESSAGES} finished 10 KB messages ...\n`);
  const dir = join(root, "spool");
  const spool = await filledSpool(dir);
  const later = new Date(Date.now() + 3 * DAY_MS);

  row("by hour", "nothing expired", await timedSweep(spool, new Date()));
  await flatten(dir);
  row("flat (before)", "nothing expired", await timedSweep(spool, new Date()));
  row("flat (before)", "all expired", await timedSweep(spool, later));
  await spool.close();

  process.stderr.write("filling again ...\n");
  await rm(dir, { recursive: true });
  const again = await filledSpool(dir);
  row("by hour", "all expired", await timedSweep(again, later));
  await again.close();

  console.log(`sweep of done/ with ${MESSAGES} finished messages (page cache warm)`);
  console.table(rows);
} finally {
  await rm(root, { recursive: true, force: true });
}
