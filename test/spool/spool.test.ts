// The spool on real files: what accept() commits and when, crash leftovers, the journal, moves
// to done/ and dead/, snapshots and the retention sweep.
import { createHash } from "node:crypto";
import fs from "node:fs";
import { appendFile, mkdir, readFile, rename, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { EvaluationTrace } from "../../src/rules/evaluate.js";
import { MessageGone } from "../../src/spool/queue.js";
import { Spool } from "../../src/spool/spool.js";
import { SpoolWriter } from "../../src/spool/spool-writer.js";
import {
  RECEIVED_AT,
  chunks,
  defaultRuleSet,
  doneFiles,
  doneTraces,
  listDir,
  messageBytes,
  newId,
  scratchDir,
  snapshotOf,
  stateFor,
  storedParts,
} from "./helpers.js";

let dir: string;
let remove: () => Promise<void>;
beforeEach(async () => {
  ({ dir, remove } = await scratchDir());
});
afterEach(async () => {
  vi.restoreAllMocks();
  await remove();
});

function trace(id: string): EvaluationTrace {
  return { messageId: id, rules: [], end: "completed", outcomes: [], prependedHeaders: [] };
}

async function storeOne(writer: SpoolWriter, snapshot: string, receivedAt = RECEIVED_AT): Promise<string> {
  const id = newId();
  await writer.store(stateFor(id, snapshot, { receivedAt: receivedAt.toISOString() }), chunks(messageBytes(id)));
  return id;
}

describe("accept", () => {
  it("commits the message and its state into queue/", async () => {
    const spool = await Spool.open({ dir });
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    const id = newId();
    const bytes = messageBytes(id);
    const { size } = await spool.writer.store(stateFor(id, snapshot), chunks(bytes.subarray(0, 10), bytes.subarray(10)));
    expect(size).toBe(bytes.length);
    expect(await listDir(join(dir, "queue"))).toEqual([`${id}.msg`]);
    expect(await listDir(join(dir, "tmp"))).toEqual([]);
    const { message, state } = storedParts(await readFile(join(dir, "queue", `${id}.msg`)));
    expect(message).toEqual(bytes);
    expect(state).toEqual(stateFor(id, snapshot));
    expect(spool.queue.depth()).toBe(1);
    expect(await spool.queue.pending()).toEqual([id]);
  });

  it("merges what is known only after the whole body (verdicts, receipt headers) into the state", async () => {
    const spool = await Spool.open({ dir });
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    const id = newId();
    let bodyDone = false;
    async function* body() {
      yield* chunks(messageBytes(id));
      bodyDone = true;
    }
    const receiptHeaders = [
      { name: "Return-Path", value: "<sender@example.net>" },
      { name: "Authentication-Results", value: "mx.example.com; spf=pass" },
    ];
    await spool.writer.store(stateFor(id, snapshot), body(), {
      completeState: async () => {
        expect(bodyDone).toBe(true);
        return { receiptHeaders, verdicts: { ...stateFor(id, snapshot).verdicts, spf: "PASS" } };
      },
    });
    const { state } = await spool.queue.read(id);
    expect(state.receiptHeaders).toEqual(receiptHeaders);
    expect(state.verdicts.spf).toBe("PASS");
  });

  it("streams a 40 MB body without holding it in memory, byte for byte", async () => {
    const spool = await Spool.open({ dir });
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    const id = newId();
    const chunkSize = 64 * 1024;
    const count = (40 * 1024 * 1024) / chunkSize;
    const expected = createHash("sha256");
    // One buffer, refilled for every chunk: the producer holds 64 KB, whatever the spool holds is the spool's.
    const chunk = Buffer.alloc(chunkSize);
    async function* body() {
      const head = messageBytes(id, "");
      expected.update(head);
      yield head;
      for (let i = 0; i < count; i++) {
        chunk.fill(i % 251);
        chunk.writeUInt32BE(i, 0);
        expected.update(chunk);
        yield chunk;
      }
    }
    // Warm up, so that what is measured is the 40 MB and not the first use of the code paths.
    await storeOne(spool.writer, snapshot);
    const before = process.memoryUsage();
    const { size } = await spool.writer.store(stateFor(id, snapshot), body());
    const after = process.memoryUsage();
    expect(size).toBe(messageBytes(id, "").length + count * chunkSize);
    expect(after.rss - before.rss).toBeLessThan(16 * 1024 * 1024);
    expect(after.arrayBuffers - before.arrayBuffers).toBeLessThan(16 * 1024 * 1024);
    const actual = createHash("sha256");
    for await (const piece of (await spool.queue.read(id)).message.open()) actual.update(piece as Buffer);
    expect(actual.digest("hex")).toBe(expected.digest("hex"));
    // The stored file itself: the message, then the state and the footer.
    const file = await stat(join(dir, "queue", `${id}.msg`));
    expect(file.size).toBeGreaterThan(size);
    expect(file.size - size).toBeLessThan(2048);
  });

  it("leaves nothing behind when the body throws midway, and rethrows", async () => {
    const spool = await Spool.open({ dir });
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    const id = newId();
    async function* body() {
      yield Buffer.alloc(300 * 1024, 0x61);
      throw new Error("552 5.3.4 Message size exceeds fixed maximum message size");
    }
    await expect(spool.writer.store(stateFor(id, snapshot), body())).rejects.toThrow(/552/);
    expect(await listDir(join(dir, "queue"))).toEqual([]);
    expect(await listDir(join(dir, "tmp"))).toEqual([]);
    expect(spool.queue.depth()).toBe(0);
    expect(await spool.queue.pending()).toEqual([]);
  });

  it("shares directory fsyncs among concurrent accepts (group commit)", async () => {
    const spool = await Spool.open({ dir });
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    const original = fs.fsync;
    // Directory fsyncs are the only fs.fsync calls (files use fdatasync). Each takes 5 ms, as on a disk.
    const fsync = vi.spyOn(fs, "fsync").mockImplementation(((fd: number, callback: (error: NodeJS.ErrnoException | null) => void) => {
      setTimeout(() => original(fd, callback), 5);
    }) as typeof fs.fsync);
    const ids = Array.from({ length: 50 }, () => newId());
    await Promise.all(ids.map((id) => spool.writer.store(stateFor(id, snapshot), chunks(messageBytes(id)))));
    expect(fsync.mock.calls.length).toBeGreaterThanOrEqual(1);
    expect(fsync.mock.calls.length).toBeLessThan(50);
    expect(fsync.mock.calls.length).toBeLessThanOrEqual(10);
    expect(new Set(await spool.queue.pending())).toEqual(new Set(ids));
    expect(spool.queue.depth()).toBe(50);
  });

  it("fsyncs queue/ once the file is in it, before resolving", async () => {
    const spool = await Spool.open({ dir });
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    const id = newId();
    const original = fs.fsync;
    let committedAtSync: string[] | undefined;
    vi.spyOn(fs, "fsync").mockImplementation(((fd: number, callback: (error: NodeJS.ErrnoException | null) => void) => {
      committedAtSync = fs.readdirSync(join(dir, "queue")).sort();
      original(fd, callback);
    }) as typeof fs.fsync);
    await spool.writer.store(stateFor(id, snapshot), chunks(messageBytes(id)));
    expect(committedAtSync).toEqual([`${id}.msg`]);
  });

  it("refuses a message whose snapshot was never saved, and bad message IDs", async () => {
    const spool = await Spool.open({ dir });
    const id = newId();
    await expect(spool.writer.store(stateFor(id, "0".repeat(64)), chunks(messageBytes(id)))).rejects.toThrow(/snapshot/);
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    await expect(spool.writer.store(stateFor("../../etc/passwd", snapshot), chunks(messageBytes(id)))).rejects.toThrow(TypeError);
    await expect(spool.queue.read("../x")).rejects.toThrow(TypeError);
    await expect(spool.queue.loadSnapshot("../x")).rejects.toThrow(TypeError);
    expect(await listDir(join(dir, "queue"))).toEqual([]);
  });
});

describe("files reserved for the next messages", () => {
  /** The reserve fills in the background; these wait for it to be full. */
  const reserved = async (count: number): Promise<string[]> => {
    await expect.poll(async () => (await listDir(join(dir, "queue"))).length, { timeout: 5000 }).toBe(count);
    return listDir(join(dir, "queue"));
  };
  const RESERVE = 16;
  /**
   * The ID of a reserved file among `files`. A file is listed as soon as it is created, but handed
   * out only once the directory fsync after it is done; until then a claim gets a new ID.
   */
  const claimReserved = async (writer: SpoolWriter, files: string[]): Promise<string> => {
    for (;;) {
      const id = writer.claimMessageId(newId);
      if (files.includes(`${id}.msg`)) return id;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  };

  it("are made only once IDs are claimed, and are empty until a message is accepted into one", async () => {
    // A slow disk: reserved files appear in queue/ a while before their directory entries are
    // durable, and only then are they handed out (this test once flaked on a loaded machine).
    const original = fs.fsync;
    vi.spyOn(fs, "fsync").mockImplementation(((fd: number, callback: (error: NodeJS.ErrnoException | null) => void) => {
      setTimeout(() => original(fd, callback), 50);
    }) as typeof fs.fsync);
    const spool = await Spool.open({ dir });
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    await storeOne(spool.writer, snapshot);
    expect((await listDir(join(dir, "queue"))).length).toBe(1);

    const first = spool.writer.claimMessageId(newId);
    const files = await reserved(RESERVE + 1);
    expect(files).not.toContain(`${first}.msg`);
    for (const name of files) {
      if ((await stat(join(dir, "queue", name))).size > 0) continue;
      expect(name).toMatch(/^[0-9a-v]{40}\.msg$/);
    }

    const id = await claimReserved(spool.writer, files);
    const bytes = messageBytes(id);
    await spool.writer.store(stateFor(id, snapshot), chunks(bytes));
    const { message, state } = storedParts(await readFile(join(dir, "queue", `${id}.msg`)));
    expect(message).toEqual(bytes);
    expect(state).toEqual(stateFor(id, snapshot));
    expect(spool.queue.depth()).toBe(2);
    expect(await listDir(join(dir, "queue"))).toHaveLength(RESERVE + 1);
    // Used files are replaced, half the reserve at a time, once their messages are stored.
    for (let i = 0; i < RESERVE / 2; i++) {
      const next = spool.writer.claimMessageId(newId);
      await spool.writer.store(stateFor(next, snapshot), chunks(messageBytes(next)));
    }
    const empty = async (): Promise<number> => {
      let count = 0;
      for (const name of await listDir(join(dir, "queue"))) if ((await stat(join(dir, "queue", name))).size === 0) count++;
      return count;
    };
    // The last claim may have come after the refill, or while it was under way.
    await expect.poll(empty, { timeout: 5000 }).toBeGreaterThanOrEqual(RESERVE - 1);
    expect(spool.queue.depth()).toBe(2 + RESERVE / 2);
    await spool.close();
  });

  it("are removed when the spool closes, and by open() after a crash", async () => {
    const spool = await Spool.open({ dir });
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    spool.writer.claimMessageId(newId);
    await reserved(RESERVE);
    await spool.close();
    expect(await listDir(join(dir, "queue"))).toEqual([]);

    // A crash: the spool is never closed.
    const crashed = await Spool.open({ dir });
    crashed.writer.claimMessageId(newId);
    const id = crashed.writer.claimMessageId(newId);
    await reserved(RESERVE);
    const kept = await storeOne(crashed.writer, snapshot);
    const reopened = await Spool.open({ dir });
    expect(await listDir(join(dir, "queue"))).toEqual([`${kept}.msg`]);
    expect(await reopened.queue.pending()).toEqual([kept]);
    expect(id).toMatch(/^[0-9a-v]{40}$/);
    await reopened.close();
  });

  it("leave nothing behind when the message is refused, or its accept fails before the first byte", async () => {
    const spool = await Spool.open({ dir });
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    spool.writer.claimMessageId(newId);
    await reserved(RESERVE);
    const refused = spool.writer.claimMessageId(newId);
    async function* body() {
      yield Buffer.alloc(1024, 0x61);
      throw new Error("552 5.3.4 Message size exceeds fixed maximum message size");
    }
    await expect(spool.writer.store(stateFor(refused, snapshot), body())).rejects.toThrow(/552/);
    const unsaved = spool.writer.claimMessageId(newId);
    await expect(spool.writer.store(stateFor(unsaved, "0".repeat(64)), chunks(messageBytes(unsaved)))).rejects.toThrow(/was not saved/);
    const left = await listDir(join(dir, "queue"));
    expect(left).not.toContain(`${refused}.msg`);
    expect(left).not.toContain(`${unsaved}.msg`);
    expect(spool.queue.depth()).toBe(0);
    await spool.close();
    expect(await listDir(join(dir, "queue"))).toEqual([]);
  });
});

describe("an acceptor process's spool beside the daemon's", () => {
  it("stores messages the daemon's spool knows only once adopted, and keeps no index of its own", async () => {
    const daemon = await Spool.open({ dir });
    const acceptor = SpoolWriter.forAcceptor({ dir });
    const snapshot = await acceptor.saveSnapshot(snapshotOf());
    const id = acceptor.claimMessageId(newId);
    const bytes = messageBytes(id);
    await acceptor.store(stateFor(id, snapshot), chunks(bytes));
    expect(daemon.queue.depth()).toBe(0);

    daemon.queue.adopt(id);
    daemon.queue.adopt(id);
    expect(daemon.queue.depth()).toBe(1);
    expect(await daemon.queue.pending()).toEqual([id]);
    const read = await daemon.queue.read(id);
    expect(read.state).toEqual(stateFor(id, snapshot));
    const pieces: Buffer[] = [];
    for await (const piece of read.message.open()) pieces.push(piece as Buffer);
    expect(Buffer.concat(pieces)).toEqual(bytes);
    expect(() => daemon.queue.adopt("not-an-id")).toThrow();

    // Closing the acceptor's spool removes its reserved files, nothing else.
    await acceptor.close();
    expect(await listDir(join(dir, "queue"))).toEqual([`${id}.msg`]);
    await daemon.close();
  });

  it("adoptUnreported finds committed messages nobody reported, not files still being written or reserved", async () => {
    const daemon = await Spool.open({ dir });
    const acceptor = SpoolWriter.forAcceptor({ dir });
    const snapshot = await acceptor.saveSnapshot(snapshotOf());
    const reported = await storeOne(acceptor, snapshot);
    daemon.queue.adopt(reported);
    const unreported = await storeOne(acceptor, snapshot);
    acceptor.claimMessageId(newId); // reserves empty files
    const partial = newId();
    await writeFile(join(dir, "queue", `${partial}.msg`), "Subject: half a message\r\n");

    expect(await daemon.queue.adoptUnreported()).toEqual([unreported]);
    expect(await daemon.queue.adoptUnreported()).toEqual([]);
    expect((await daemon.queue.pending()).sort()).toEqual([reported, unreported].sort());
    await acceptor.close();
    await daemon.close();
  });

  it("adoptUnreported leaves what an earlier run left to recovery, when an acceptor dies before recovery is done", async () => {
    const earlier = await Spool.open({ dir });
    const snapshot = await earlier.writer.saveSnapshot(snapshotOf());
    const left = await storeOne(earlier.writer, snapshot);
    await earlier.close();
    await writeFile(join(dir, "dead", `${left}.trace.json`), JSON.stringify({ at: RECEIVED_AT.toISOString(), reason: "abandoned", trace: null }));

    const daemon = await Spool.lock({ dir });
    const adopting = daemon.queue.adoptUnreported();
    await daemon.recover();
    expect(await adopting).toEqual([]);
    expect(await listDir(join(dir, "dead"))).toEqual([`${left}.msg`, `${left}.trace.json`]);
    expect(daemon.queue.depth()).toBe(0);
    await daemon.close();
  });

  it("lets two processes save the same snapshot at once", async () => {
    const daemon = await Spool.open({ dir });
    const other = SpoolWriter.forAcceptor({ dir });
    const [a, b] = await Promise.all([daemon.writer.saveSnapshot(snapshotOf()), other.saveSnapshot(snapshotOf())]);
    expect(a).toBe(b);
    expect(await listDir(join(dir, "snapshots"))).toEqual([`${a}.json`]);
    expect(await listDir(join(dir, "tmp"))).toEqual([]);
  });
});

describe("open", () => {
  it("removes accepts cut short (no footer), orphan journals and whatever is in tmp/", async () => {
    let spool = await Spool.open({ dir });
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    const kept = await storeOne(spool.writer, snapshot);
    const half = newId();
    const orphan = newId();
    // A crash mid-body, a journal with no message, and a dead-letter trace being written.
    await writeFile(join(dir, "queue", `${half}.msg`), "Subject: half\r\n");
    await writeFile(join(dir, "queue", `${orphan}.journal`), '{"status":"done"}\n');
    await writeFile(join(dir, "tmp", `${orphan}.trace.json`), "{");
    spool = await Spool.open({ dir });
    expect(await listDir(join(dir, "tmp"))).toEqual([]);
    expect(await listDir(join(dir, "queue"))).toEqual([`${kept}.msg`]);
    expect(await spool.queue.pending()).toEqual([kept]);
    expect(spool.queue.depth()).toBe(1);
  });

  it("finishes a move to dead/ that a crash interrupted", async () => {
    let spool = await Spool.open({ dir });
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    const toDead = await storeOne(spool.writer, snapshot);
    await spool.queue.recordOutcome(toDead, { status: "done" });
    // As left by a crash inside deadLetter(): the trace durable, the journal and the message not moved yet.
    await writeFile(join(dir, "dead", `${toDead}.trace.json`), JSON.stringify({ reason: "x", trace: null }));
    spool = await Spool.open({ dir });
    expect(await listDir(join(dir, "queue"))).toEqual([]);
    expect(await listDir(join(dir, "dead"))).toEqual([`${toDead}.journal`, `${toDead}.msg`, `${toDead}.trace.json`].sort());
    expect(spool.queue.depth()).toBe(0);
  });

  it("brings back a journal whose move to done/ a crash kept while undoing the message's", async () => {
    let spool = await Spool.open({ dir });
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    const id = await storeOne(spool.writer, snapshot);
    await spool.queue.recordOutcome(id, { status: "done", detail: { n: 1 } });
    // The moves are not fsync'd: after a crash the journal's rename may survive without the rest.
    await mkdir(join(dir, "done", "2026-11-23T09"));
    await rename(join(dir, "queue", `${id}.journal`), join(dir, "done", "2026-11-23T09", `${id}.journal`));
    spool = await Spool.open({ dir });
    expect(await listDir(join(dir, "queue"))).toEqual([`${id}.journal`, `${id}.msg`]);
    expect(await doneFiles(dir)).toEqual([]);
    expect((await spool.queue.read(id)).outcomes).toEqual([{ status: "done", detail: { n: 1 } }]);
  });

  it("sends a journal left in queue/ after its message to the done/ hour that has the message", async () => {
    let spool = await Spool.open({ dir });
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    const id = await storeOne(spool.writer, snapshot);
    await spool.queue.recordOutcome(id, { status: "done" });
    await spool.queue.complete(id, trace(id));
    const [hour] = await listDir(join(dir, "done")).then((names) => names.filter((name) => !name.startsWith("traces-")));
    // As if a crash kept the message's rename and undid the journal's.
    await rename(join(dir, "done", hour!, `${id}.journal`), join(dir, "queue", `${id}.journal`));
    spool = await Spool.open({ dir });
    expect(await listDir(join(dir, "queue"))).toEqual([]);
    expect(await doneFiles(dir)).toEqual([`${hour}/${id}.journal`, `${hour}/${id}.msg`]);
    expect(spool.queue.depth()).toBe(0);
  });

  it("removes, when first read, a message whose content does not match its checksum (never committed)", async () => {
    let spool = await Spool.open({ dir });
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    const torn = await storeOne(spool.writer, snapshot);
    const whole = await storeOne(spool.writer, snapshot);
    // As after a power cut during the fdatasync: the footer reached the disk, a body block did not.
    const path = join(dir, "queue", `${torn}.msg`);
    const bytes = await readFile(path);
    bytes.fill(0, 10, 20);
    await writeFile(path, bytes);
    spool = await Spool.open({ dir });
    expect(new Set(await spool.queue.pending())).toEqual(new Set([torn, whole]));
    const read = spool.queue.read(torn);
    await expect(read).rejects.toBeInstanceOf(MessageGone);
    await expect(read).rejects.toMatchObject({ messageId: torn, message: expect.stringMatching(/never committed/) });
    expect(await listDir(join(dir, "queue"))).toEqual([`${whole}.msg`]);
    expect(await spool.queue.pending()).toEqual([whole]);
    expect((await spool.queue.read(whole)).state.messageId).toBe(whole);
  });

  it("keeps a damaged message that had started processing, and reports it when read", async () => {
    let spool = await Spool.open({ dir });
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    const id = await storeOne(spool.writer, snapshot);
    await spool.queue.recordOutcome(id, { status: "done" });
    const path = join(dir, "queue", `${id}.msg`);
    const bytes = await readFile(path);
    bytes.fill(0, 10, 20);
    await writeFile(path, bytes);
    spool = await Spool.open({ dir });
    await expect(spool.queue.read(id)).rejects.toThrow(/does not match its checksum/);
    expect(await listDir(join(dir, "queue"))).toEqual([`${id}.journal`, `${id}.msg`]);
  });
});

describe("pending", () => {
  it("lists committed messages oldest first", async () => {
    const spool = await Spool.open({ dir });
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    const late = await storeOne(spool.writer, snapshot, new Date("2026-11-23T10:00:00Z"));
    const early = await storeOne(spool.writer, snapshot, new Date("2026-11-23T08:00:00Z"));
    const middle = await storeOne(spool.writer, snapshot, new Date("2026-11-23T09:00:00Z"));
    expect(await spool.queue.pending()).toEqual([early, middle, late]);
    await spool.queue.complete(middle, trace(middle));
    expect(await spool.queue.pending()).toEqual([early, late]);
  });
});

describe("read", () => {
  it("serves a just-accepted message from memory exactly as a fresh process reads it from disk", async () => {
    const spool = await Spool.open({ dir });
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    const id = newId();
    const bytes = messageBytes(id);
    await spool.writer.store(stateFor(id, snapshot), chunks(bytes.subarray(0, 7), bytes.subarray(7)));
    const fromMemory = await spool.queue.read(id);
    const fromDisk = await (await Spool.open({ dir })).queue.read(id);
    expect(fromMemory.state).toEqual(fromDisk.state);
    expect(fromMemory.outcomes).toEqual([]);
    const { open: openMemory, ...memoryMessage } = fromMemory.message;
    const { open: openDisk, ...diskMessage } = fromDisk.message;
    expect(memoryMessage).toEqual(diskMessage);
    const read = async (source: AsyncIterable<Buffer>) => {
      const parts: Buffer[] = [];
      for await (const part of source) parts.push(part);
      return Buffer.concat(parts);
    };
    expect(await read(openMemory())).toEqual(await read(openDisk()));
    // Only the first read comes from memory: a retry sees the journal on disk.
    await spool.queue.recordOutcome(id, { status: "done" });
    expect((await spool.queue.read(id)).outcomes).toEqual([{ status: "done" }]);
  });
  it("finds the end of the header block wherever the chunks split it, with CRLF or LF line ends", async () => {
    const spool = await Spool.open({ dir });
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    const crlf = messageBytes("x", "Body line\r\n");
    const lf = Buffer.from(crlf.toString("latin1").replace(/\r\n/g, "\n"), "latin1");
    const headerless = Buffer.from("\r\nOnly a body\r\n");
    for (const bytes of [crlf, lf, headerless]) {
      const end = bytes.indexOf(bytes === lf ? "\n\n" : "\r\n\r\n");
      for (const cut of [1, 2, end - 1, end, end + 1, end + 2, end + 3, end + 4, bytes.length - 1]) {
        if (cut <= 0 || cut >= bytes.length) continue;
        const id = newId();
        await spool.writer.store(stateFor(id, snapshot), chunks(bytes.subarray(0, cut), bytes.subarray(cut)));
        const fromDisk = await (await Spool.open({ dir })).queue.read(id);
        // Moved away while read, so that only the copy in memory can answer.
        const stored = join(dir, "queue", `${id}.msg`);
        await rename(stored, `${stored}.away`);
        const fromMemory = await spool.queue.read(id);
        await rename(`${stored}.away`, stored);
        expect(fromMemory.message.headerBlock, `cut at ${cut}`).toEqual(fromDisk.message.headerBlock);
        expect(fromMemory.message.headers, `cut at ${cut}`).toEqual(fromDisk.message.headers);
        await spool.queue.complete(id, trace(id));
      }
    }
  });
});

describe("journal", () => {
  it("reads back the recorded outcomes with the state and the message", async () => {
    const spool = await Spool.open({ dir });
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    const id = await storeOne(spool.writer, snapshot);
    await spool.queue.recordOutcome(id, { status: "done", detail: { objectKey: id } });
    await spool.queue.recordOutcome(id, { status: "done", disposition: "STOP_RULE" });
    const { state, outcomes, message } = await spool.queue.read(id);
    expect(state).toEqual(stateFor(id, snapshot));
    expect(outcomes).toEqual([
      { status: "done", detail: { objectKey: id } },
      { status: "done", disposition: "STOP_RULE" },
    ]);
    expect(message.receivedAt).toEqual(RECEIVED_AT);
    expect(message.size).toBe(messageBytes(id).length);
    expect(message.headers.map((h) => h.name)).toEqual(["Return-Path", "Received", "From", "To", "Subject", "Message-ID"]);
    const read: Buffer[] = [];
    for await (const piece of message.open()) read.push(piece);
    expect(Buffer.concat(read)).toEqual(messageBytes(id));
  });

  it("ignores a torn last line and cuts it off so that later lines stay readable", async () => {
    const spool = await Spool.open({ dir });
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    const id = await storeOne(spool.writer, snapshot);
    await spool.queue.recordOutcome(id, { status: "done", detail: { n: 1 } });
    await appendFile(join(dir, "queue", `${id}.journal`), '{"status":"done","det');
    expect((await spool.queue.read(id)).outcomes).toEqual([{ status: "done", detail: { n: 1 } }]);
    await spool.queue.recordOutcome(id, { status: "done", detail: { n: 2 } });
    expect((await spool.queue.read(id)).outcomes).toEqual([
      { status: "done", detail: { n: 1 } },
      { status: "done", detail: { n: 2 } },
    ]);
  });

  it("does not journal failed outcomes: they are retried, not replayed", async () => {
    const spool = await Spool.open({ dir });
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    const id = await storeOne(spool.writer, snapshot);
    await expect(spool.queue.recordOutcome(id, { status: "failed", failure: "transient", error: "x" })).rejects.toThrow(TypeError);
  });

  it("fdatasyncs each line before resolving", async () => {
    const spool = await Spool.open({ dir });
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    const id = await storeOne(spool.writer, snapshot);
    const datasync = vi.spyOn(fs, "fdatasync");
    await spool.queue.recordOutcome(id, { status: "done" });
    expect(datasync).toHaveBeenCalledTimes(1);
  });
});

describe("complete, deadLetter and sweep", () => {
  it("moves a finished message to done/<hour>/ with its trace, an abandoned one to dead/ with the reason", async () => {
    const spool = await Spool.open({ dir });
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    const good = await storeOne(spool.writer, snapshot);
    const bad = await storeOne(spool.writer, snapshot);
    await spool.queue.recordOutcome(good, { status: "done" });
    await spool.queue.complete(good, trace(good));
    await spool.queue.deadLetter(bad, null, "permanent failure: NoSuchBucket");
    expect(await listDir(join(dir, "queue"))).toEqual([]);
    const traces = await doneTraces(dir);
    const { at } = traces.get(good)!;
    expect(await listDir(join(dir, "done"))).toEqual([at.slice(0, 13), `traces-${at.slice(0, 10)}.jsonl`]);
    expect(await doneFiles(dir)).toEqual([`${at.slice(0, 13)}/${good}.journal`, `${at.slice(0, 13)}/${good}.msg`]);
    expect(await listDir(join(dir, "dead"))).toEqual([`${bad}.msg`, `${bad}.trace.json`].sort());
    expect(traces.get(good)).toMatchObject({ messageId: good, trace: trace(good) });
    expect(JSON.parse(await readFile(join(dir, "dead", `${bad}.trace.json`), "utf8"))).toMatchObject({
      reason: "permanent failure: NoSuchBucket",
      trace: null,
    });
    expect(spool.queue.depth()).toBe(0);
    const again = spool.queue.complete(good, trace(good));
    await expect(again).rejects.toBeInstanceOf(MessageGone);
    await expect(again).rejects.toMatchObject({ messageId: good, message: expect.stringMatching(/not pending/) });
    expect(await listDir(join(dir, "tmp"))).toEqual([]);
  });

  it("complete() syncs nothing (the journal already holds every outcome); deadLetter() syncs its trace", async () => {
    const spool = await Spool.open({ dir });
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    const good = await storeOne(spool.writer, snapshot);
    const bad = await storeOne(spool.writer, snapshot);
    await spool.queue.recordOutcome(good, { status: "done" });
    const datasync = vi.spyOn(fs, "fdatasync");
    const fsync = vi.spyOn(fs, "fsync");
    await spool.queue.complete(good, trace(good));
    expect(datasync).not.toHaveBeenCalled();
    expect(fsync).not.toHaveBeenCalled();
    await spool.queue.deadLetter(bad, null, "gone");
    expect(datasync).toHaveBeenCalledTimes(1);
    expect(fsync).toHaveBeenCalledTimes(1);
  });

  it("sweep deletes the done/ hours whose end is past the retention period, never dead/ or queue/", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const spool = await Spool.open({ dir });
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    const completeAt = async (at: string) => {
      vi.setSystemTime(new Date(at));
      const id = await storeOne(spool.writer, snapshot, new Date(at));
      await spool.queue.complete(id, trace(id));
      return id;
    };
    await completeAt("2026-11-24T10:30:00Z");
    await completeAt("2026-11-24T11:59:59Z");
    const next = await completeAt("2026-11-24T12:00:00Z");
    const dead = await storeOne(spool.writer, snapshot, new Date("2026-11-20T00:00:00Z"));
    await spool.queue.deadLetter(dead, null, "gone");
    const pending = await storeOne(spool.writer, snapshot, new Date("2026-11-20T00:00:00Z"));
    vi.useRealTimers();

    // 24 hours after the end of 11:00-12:00, and not yet after the end of 12:00-13:00.
    expect(await spool.queue.sweep(new Date("2026-11-25T12:00:00.001Z"))).toBe(2);
    expect(await doneFiles(dir)).toEqual([`2026-11-24T12/${next}.msg`]);
    expect((await listDir(join(dir, "done"))).filter((name) => !name.startsWith("traces-"))).toEqual(["2026-11-24T12"]);
    expect(await listDir(join(dir, "dead"))).toEqual([`${dead}.msg`, `${dead}.trace.json`].sort());
    expect(await spool.queue.pending()).toEqual([pending]);
    expect(await spool.queue.sweep(new Date("2026-11-25T12:00:00.001Z"), 60 * 60 * 1000)).toBe(1);
    expect(await doneFiles(dir)).toEqual([]);
  });

  it("sweep reads no message: whole hours go by their name", async () => {
    const spool = await Spool.open({ dir });
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    const ids = await Promise.all(Array.from({ length: 5 }, () => storeOne(spool.writer, snapshot)));
    for (const id of ids) await spool.queue.complete(id, trace(id));
    const read = vi.spyOn(fs, "read");
    expect(await spool.queue.sweep(new Date(Date.now() + 3 * 24 * 60 * 60 * 1000))).toBe(5);
    expect(read).not.toHaveBeenCalled();
    expect(await listDir(join(dir, "done"))).toEqual([]);
  });

  it("finishes a message into its hour after a sweep removed that hour's directory", async () => {
    const spool = await Spool.open({ dir });
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    const first = await storeOne(spool.writer, snapshot);
    await spool.queue.complete(first, trace(first));
    await spool.queue.sweep(new Date(Date.now() + 3 * 24 * 60 * 60 * 1000), 0);
    const second = await storeOne(spool.writer, snapshot);
    await spool.queue.recordOutcome(second, { status: "done" });
    await spool.queue.complete(second, trace(second));
    expect((await doneFiles(dir)).map((path) => path.slice(14))).toEqual([`${second}.journal`, `${second}.msg`]);
  });

  it("sweep deletes the messages a spool kept in done/ itself before they were filed by hour, by their receipt time", async () => {
    const spool = await Spool.open({ dir });
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    const old = await storeOne(spool.writer, snapshot, new Date("2026-11-24T11:00:00Z"));
    const recent = await storeOne(spool.writer, snapshot, new Date("2026-11-24T13:00:00Z"));
    await spool.queue.recordOutcome(old, { status: "done" });
    for (const id of [old, recent]) await spool.queue.complete(id, trace(id));
    for (const path of await doneFiles(dir)) await rename(join(dir, "done", path), join(dir, "done", path.slice(14)));
    expect(await spool.queue.sweep(new Date("2026-11-25T12:00:00Z"))).toBe(1);
    expect((await listDir(join(dir, "done"))).filter((name) => name.length > 40)).toEqual([`${recent}.msg`]);
  });

  it("sweep deletes a day's trace log once its last possible entry is past the retention period", async () => {
    const spool = await Spool.open({ dir });
    for (const day of ["2026-11-23", "2026-11-24", "2026-11-25"]) await writeFile(join(dir, "done", `traces-${day}.jsonl`), "{}\n");
    await spool.queue.sweep(new Date("2026-11-25T12:00:00Z"));
    expect(await listDir(join(dir, "done"))).toEqual(["traces-2026-11-24.jsonl", "traces-2026-11-25.jsonl"]);
  });

  it("appends the traces of messages completed together in one write, and keeps writing after a sweep", async () => {
    const spool = await Spool.open({ dir });
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    const ids = await Promise.all(Array.from({ length: 20 }, () => storeOne(spool.writer, snapshot)));
    const write = vi.spyOn(fs, "write");
    await Promise.all(ids.map((id) => spool.queue.complete(id, trace(id))));
    expect(write).toHaveBeenCalled();
    expect(write.mock.calls.length).toBeLessThan(ids.length);
    write.mockRestore();
    expect([...(await doneTraces(dir)).keys()].sort()).toEqual([...ids].sort());
    await spool.queue.sweep(new Date(Date.now() + 10 * 24 * 60 * 60 * 1000));
    const later = await storeOne(spool.writer, snapshot);
    await spool.queue.complete(later, trace(later));
    expect([...(await doneTraces(dir)).keys()]).toEqual([later]);
    await spool.close();
  });

  it("sweep leaves alone a message whose move into done/ is under way", async () => {
    const spool = await Spool.open({ dir });
    const id = newId();
    await writeFile(join(dir, "done", `${id}.journal`), '{"status":"done"}\n');
    expect(await spool.queue.sweep(new Date("2030-01-01T00:00:00Z"))).toBe(0);
    expect(await listDir(join(dir, "done"))).toEqual([`${id}.journal`]);
  });
});

describe("snapshots", () => {
  it("stores each distinct snapshot once under its hash and loads it back frozen", async () => {
    const spool = await Spool.open({ dir });
    const hash = await spool.writer.saveSnapshot(snapshotOf());
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    const again = await spool.writer.saveSnapshot({ ruleSet: defaultRuleSet(), identities: { addresses: [], domains: ["example.com"] } });
    expect(again).toBe(hash);
    const other = await spool.writer.saveSnapshot({ ruleSet: defaultRuleSet(), identities: { addresses: [], domains: ["example.org"] } });
    expect(other).not.toBe(hash);
    expect(await listDir(join(dir, "snapshots"))).toEqual([`${hash}.json`, `${other}.json`].sort());
    const text = await readFile(join(dir, "snapshots", `${hash}.json`), "utf8");
    expect(createHash("sha256").update(text).digest("hex")).toBe(hash);
    // SES JSON, so that a snapshot outlives changes to the in-memory model.
    expect(JSON.parse(text).ruleSet.Rules[0].Actions[0]).toEqual({ S3Action: { BucketName: "bucket-a" } });

    const fresh = await Spool.open({ dir });
    const loaded = await fresh.queue.loadSnapshot(hash);
    expect(loaded.ruleSet).toEqual(defaultRuleSet());
    expect(loaded.identities).toEqual({ addresses: [], domains: ["example.com"] });
    expect(Object.isFrozen(loaded.ruleSet)).toBe(true);
    expect(await fresh.queue.loadSnapshot(hash)).toBe(loaded);
  });

  it("refuses a snapshot whose content does not match its hash", async () => {
    const spool = await Spool.open({ dir });
    const hash = await spool.writer.saveSnapshot(snapshotOf());
    const path = join(dir, "snapshots", `${hash}.json`);
    await writeFile(path, (await readFile(path, "utf8")).replace("bucket-a", "bucket-z"));
    await expect((await Spool.open({ dir })).queue.loadSnapshot(hash)).rejects.toThrow(/does not match/);
  });

  it("makes the layout in a directory that does not exist yet", async () => {
    const nested = join(dir, "a", "b");
    await Spool.open({ dir: nested });
    for (const sub of ["tmp", "queue", "done", "dead", "snapshots"]) expect((await stat(join(nested, sub))).isDirectory()).toBe(true);
    await mkdir(join(nested, "queue", "ignored-subdir"));
    expect(await (await Spool.open({ dir: nested })).queue.pending()).toEqual([]);
  });
});
