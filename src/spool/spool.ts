/**
 * The durable spool: every message the daemon answered 250 for stays here until its rules have
 * run, and for a retention period after (SEMANTICS sections 4 and 8).
 *
 * Layout under `dir`:
 *
 *   tmp/                    files being written. Whatever is here at open() is a crash leftover
 *                           and is deleted.
 *     <id>.trace.json         a move to dead/ in progress
 *     snapshot-<hash>.json    a snapshot in progress
 *   queue/                  messages being accepted, and committed messages whose processing has
 *                           not finished
 *     <id>.msg                the message (see "Stored file" below)
 *     <id>.journal            one JSON line per action outcome recorded done, in execution order
 *   done/                   messages whose evaluation completed or stopped; swept after retention
 *     <UTC hour>/             e.g. 2026-12-01T16: the messages completed in that hour, so that
 *       <id>.msg <id>.journal   the sweep deletes whole expired hours without reading a message
 *     traces-<UTC day>.jsonl  one line ({ messageId, at, trace }) per message completed that day
 *   dead/                   messages whose processing was abandoned; kept until an operator acts
 *     <id>.msg <id>.journal <id>.trace.json   ({ at, reason, trace })
 *   snapshots/<sha256>.json the rule set (SES JSON) and identities messages are evaluated against
 *
 * Stored file: the message bytes as received, then its MessageState as JSON, then a fixed-size
 * footer line `receiptd-spool/1 <message bytes, 16 digits> <state bytes, 10 digits> <CRC-32 of
 * message and state, 8 hex digits>` preceded by a newline. The state goes last because some of
 * it (authentication) is only known once the whole message has streamed through.
 * `head -c <message bytes>` gives the message back.
 *
 * Commit points:
 *  - accept: queue/<id>.msg is created, and queue/ fsync'd while the body streams in; the file is
 *    complete with its footer and fdatasync'd before the 250. So the 250 waits for one write and
 *    one fdatasync after the final dot, and for nothing else. A file in queue/ without a footer
 *    is an accept cut short and open() deletes it; one whose content does not match its footer
 *    (the machine went down before the fdatasync finished, and blocks reached the disk out of
 *    order) is found when it is first read and deleted too. Neither was answered 250.
 *  - complete: the trace is appended to the day's log, then .journal and .msg move to the hour's
 *    directory in done/. None of it is fsync'd: every action's outcome is already in the
 *    fdatasync'd journal, so should a crash undo the move, processing the message again runs no
 *    action twice and only redoes the move (its trace may then appear twice).
 *  - deadLetter: dead/<id>.trace.json is made durable, then .journal and .msg move to dead/, so
 *    that a crash cannot bring an abandoned message back to be retried: open() finishes a move it
 *    finds half done, the trace beside a message in queue/ saying where it was going.
 *
 * The message ID (validated before it is used in a path) names every file of a message, so one
 * readdir tells what state each message is in. One process owns a spool at a time: open() takes
 * `lock`, which holds the owner's PID, before it touches anything, and close() gives it back.
 *
 * To retry a dead message, an operator moves its .msg and (to skip the actions already done)
 * .journal back into queue/ and deletes its .trace.json, which open() would otherwise take for an
 * interrupted move and follow back to dead/.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import { link, mkdir, open, readFile, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { promisify } from "node:util";
import { fileMessage } from "../actions/message.js";
import type { ReceivedMessage } from "../actions/message.js";
import { DEFAULTS } from "../config/defaults.js";
import { parseMessageHead, readMessageHeadAt, scanHeaderEnd } from "../mail/headers.js";
import type { MessageHead } from "../mail/headers.js";
import { isMessageId } from "../mail/message-id.js";
import type { EvaluationTrace } from "../rules/evaluate.js";
import type { ActionOutcome } from "../rules/executor.js";
import { RuleSetValidationError, parseRuleSet } from "../rules/parse.js";
import type { Header, RuleSet } from "../rules/model.js";
import { toDescribeJson } from "../rules/store.js";
import type { Verdicts } from "../ses/verdicts.js";

export interface SpoolOptions {
  dir: string;
  /** Default true; tests of logic may turn it off, never production. */
  fsync?: boolean;
}

/** The small state record written beside each message. */
export interface MessageState {
  /** 40 characters of base32hex (src/mail/message-id.ts). */
  messageId: string;
  /** ISO 8601. */
  receivedAt: string;
  /** Accepted recipients only. */
  envelope: { mailFrom: string; recipients: string[] };
  client: { ip: string; helo: string; reverseDns: string | null; tls: boolean };
  verdicts: Verdicts;
  /** Content hash of the rule-set snapshot (rule set + identities) this message is evaluated against. */
  snapshot: string;
  /**
   * The headers SEMANTICS section 5 prepends on receipt (Return-Path, Received, Received-SPF,
   * Authentication-Results, ...), top first. They live here rather than in the stored bytes
   * because some are only known once the whole message has been read, and the message is
   * never held in memory to wait for them; every action sees them on top of the message.
   */
  receiptHeaders?: Header[];
}

export interface Snapshot {
  ruleSet: RuleSet;
  identities: { addresses: readonly string[]; domains: readonly string[] };
}

export interface SpooledMessage {
  state: MessageState;
  /** Outcomes recorded done, in execution order: what `evaluate` takes as `recorded`. */
  outcomes: ActionOutcome[];
  message: ReceivedMessage;
}

/** SEMANTICS section 8: accepted messages are kept for 24 hours unless configured otherwise. */
export const DEFAULT_RETENTION_MS = DEFAULTS.spool.retentionHours * 60 * 60 * 1000;

type Area = "done" | "dead";

const QUEUE_FILE = /^([0-9a-v]{40})\.(msg|journal)$/;
const AREA_FILE = /^([0-9a-v]{40})\.(msg|journal|trace\.json)$/;
/** done/traces-<UTC day>.jsonl: the traces of the messages completed that day. */
const TRACE_LOG = /^traces-(\d{4}-\d{2}-\d{2})\.jsonl$/;
/** done/<UTC hour>/: the messages completed in that hour. */
const DONE_HOUR = /^\d{4}-\d{2}-\d{2}T\d{2}$/;
const HOUR_MS = 60 * 60 * 1000;
const DAY_MS = 24 * HOUR_MS;
const SNAPSHOT_HASH = /^[0-9a-f]{64}$/;
/**
 * Small chunks (SMTP hands over lines or socket reads) are gathered to this size before a write.
 * Each write is a trip to an I/O thread that costs the main thread real CPU time: going from
 * 128 KB to 512 KB took it down by about 15% on 1 MB messages. At 1 MB, receiving waited for
 * writing more often and throughput fell. Only the pages a message fills are ever touched.
 */
const STAGING_BYTES = 512 * 1024;
const STAGING_BUFFERS_KEPT = 64;

const FOOTER_MAGIC = "receiptd-spool/1";
/** "\n" + magic + " " + 16 digits + " " + 10 digits + " " + 8 hex digits + "\n". */
const FOOTER_BYTES = 1 + FOOTER_MAGIC.length + 1 + 16 + 1 + 10 + 1 + 8 + 1;
const FOOTER = /^\nreceiptd-spool\/1 (\d{16}) (\d{10}) ([0-9a-f]{8})\n$/;
/**
 * Files kept created ahead in queue/ for the next messages. Enough for the sessions that reach
 * DATA at about the same time; more would only be refilled more slowly.
 */
const RESERVED_FILES = 16;
/** Read size for checking a stored file's checksum. */
const VERIFY_CHUNK_BYTES = 1024 * 1024;

/**
 * A message is processed right after it is accepted, so its state and head are kept in memory
 * for that first read instead of being read back from disk, which would compete with the next
 * acceptances for the disk and the I/O threads. Bounded: older entries fall back to the disk.
 */
const FRESH_ENTRIES = 1024;
const FRESH_HEAD_BYTES = 64 * 1024;

function checkId(id: string): void {
  if (!isMessageId(id)) throw new TypeError(`not a message ID: ${JSON.stringify(id)}`);
}

function checkHash(hash: string): void {
  if (!SNAPSHOT_HASH.test(hash)) throw new TypeError(`not a snapshot hash: ${JSON.stringify(hash)}`);
}

function isMissing(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | null)?.code === "ENOENT";
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if (isMissing(error)) return false;
    throw error;
  }
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

// The callback API behind promises rather than FileHandle: every accepted message takes these
// calls on the way to its 250, and FileHandle's bookkeeping costs as much main-thread time again.
const openFd = promisify(fs.open);
const fstatFd = promisify(fs.fstat);
const closeFd = promisify(fs.close);
// Looked up on the module object at call time, so that tests can count the syncs and reads.
const fdatasync = (fd: number): Promise<void> =>
  new Promise((resolve, reject) => fs.fdatasync(fd, (error) => (error ? reject(error) : resolve())));
const fsyncFd = (fd: number): Promise<void> =>
  new Promise((resolve, reject) => fs.fsync(fd, (error) => (error ? reject(error) : resolve())));
const writeFd = (fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<{ bytesWritten: number }> =>
  new Promise((resolve, reject) =>
    fs.write(fd, buf, offset, length, position, (error, bytesWritten) => (error ? reject(error) : resolve({ bytesWritten }))),
  );
const readFd = (fd: number, buf: Buffer, position: number): Promise<number> =>
  new Promise((resolve, reject) => fs.read(fd, buf, 0, buf.length, position, (error, bytesRead) => (error ? reject(error) : resolve(bytesRead))));

/** Closes a descriptor kept as the promise of its open(), if that open succeeded. */
async function closeOpened(opening: Promise<number> | null): Promise<void> {
  const fd = await opening?.catch(() => null);
  if (fd !== undefined && fd !== null) await closeFd(fd);
}

async function fsyncDirectory(path: string): Promise<void> {
  const fd = await openFd(path, "r");
  try {
    await fsyncFd(fd);
  } finally {
    await closeFd(fd);
  }
}

/**
 * Group commit of one directory's fsync (leader/follower): a caller whose rename finished while
 * an fsync is in flight cannot rely on that fsync, which may have started before the rename, so
 * it waits for the next one; every caller arriving meanwhile shares that next one. Twenty
 * sessions finishing together cost two directory fsyncs, not twenty. The directory stays open
 * between fsyncs: opening it each time would cost two more calls on the way to every 250.
 */
class DirectorySync {
  private inFlight: Promise<void> | null = null;
  private next: Promise<void> | null = null;
  private descriptor: Promise<number> | null = null;

  constructor(
    private readonly path: string,
    private readonly enabled: boolean,
  ) {}

  /** Resolves once an fsync of the directory that started after this call has completed. */
  sync(): Promise<void> {
    if (!this.enabled) return Promise.resolve();
    if (this.next) return this.next;
    if (!this.inFlight) return this.begin();
    const next = this.inFlight
      .catch(() => undefined)
      .then(() => {
        this.next = null;
        return this.begin();
      });
    this.next = next;
    return next;
  }

  async close(): Promise<void> {
    const descriptor = this.descriptor;
    this.descriptor = null;
    await closeOpened(descriptor);
  }

  private begin(): Promise<void> {
    const run: Promise<void> = this.fsyncOnce().finally(() => {
      if (this.inFlight === run) this.inFlight = null;
    });
    this.inFlight = run;
    return run;
  }

  private async fsyncOnce(): Promise<void> {
    if (!this.descriptor) {
      const opening = openFd(this.path, "r");
      this.descriptor = opening;
      // A failed open is tried again on the next sync.
      opening.catch(() => {
        if (this.descriptor === opening) this.descriptor = null;
      });
    }
    await fsyncFd(await this.descriptor);
  }
}

async function writeAll(fd: number, bytes: Buffer, position: number): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) {
    const { bytesWritten } = await writeFd(fd, bytes, offset, bytes.length - offset, position + offset);
    offset += bytesWritten;
  }
}

/**
 * Staging buffers outlive the message they were taken for: allocating two per message
 * made megabyte-sized mail cost a full garbage collection every few dozen messages (V8 counts
 * such buffers as external memory pressure). Bounded, so a burst does not stay allocated.
 */
const stagingBuffers = {
  free: [] as Buffer[],
  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafe(STAGING_BYTES);
  },
  give(buffer: Buffer): void {
    if (this.free.length < STAGING_BUFFERS_KEPT) this.free.push(buffer);
  },
};

/**
 * Writes the body as it arrives, then `trailer(bodyBytes)` right after it. Chunks are copied into
 * a staging buffer at once, so neither a producer that reuses its buffer nor a trickle of tiny
 * chunks (one write each) does harm. Two staging buffers take turns: one fills while the other
 * is being written, so that reading from the client does not stop for every write. Memory stays
 * at those two buffers whatever the message size, and a small message with its trailer goes out
 * in one write. Returns the body's size.
 */
async function writeStream(fd: number, body: AsyncIterable<Buffer>, trailer: (bodyBytes: number) => Promise<Buffer>): Promise<number> {
  const writer = new StagedWriter(fd);
  try {
    for await (const chunk of body) await writer.stage(chunk);
    const bodyBytes = writer.bytes;
    await writer.stage(await trailer(bodyBytes));
    await writer.flush();
    return bodyBytes;
  } finally {
    await writer.settle();
  }
}

class StagedWriter {
  /** Bytes staged so far, written or not. */
  bytes = 0;
  private staging: Buffer = stagingBuffers.take();
  private spare: Buffer | null = null;
  private staged = 0;
  private writing: Promise<void> = Promise.resolve();

  constructor(private readonly fd: number) {}

  async stage(chunk: Buffer): Promise<void> {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.staged === STAGING_BYTES) await this.flush();
      const copied = chunk.copy(this.staging, this.staged, offset);
      this.staged += copied;
      this.bytes += copied;
      offset += copied;
    }
  }

  /** Starts writing what is staged, once the write before it has finished. */
  async flush(): Promise<void> {
    // Waiting here also surfaces the previous write's error.
    await this.writing;
    if (this.staged === 0) return;
    const full = this.staging;
    this.writing = writeAll(this.fd, full.subarray(0, this.staged), this.bytes - this.staged);
    // Observed at once; the failure itself reaches the caller through the next flush or settle().
    this.writing.catch(() => undefined);
    this.staged = 0;
    this.staging = this.spare ?? stagingBuffers.take();
    this.spare = full;
  }

  /** Waits for the write in flight, then returns the buffers; rejects if that write failed. */
  async settle(): Promise<void> {
    try {
      await this.writing;
    } finally {
      stagingBuffers.give(this.staging);
      if (this.spare) stagingBuffers.give(this.spare);
      this.spare = null;
    }
  }
}

/** The state and footer that follow the message in its stored file; `bodyCrc` is the body's CRC-32. */
function storedTrailer(bodyBytes: number, bodyCrc: number, state: MessageState): Buffer {
  const json = Buffer.from(JSON.stringify(state));
  const crc = crc32(json, bodyCrc).toString(16).padStart(8, "0");
  const footer = `\n${FOOTER_MAGIC} ${String(bodyBytes).padStart(16, "0")} ${String(json.length).padStart(10, "0")} ${crc}\n`;
  return Buffer.concat([json, Buffer.from(footer, "latin1")]);
}

class StoredFileError extends Error {}

interface Footer {
  bodyBytes: number;
  stateBytes: number;
  /** CRC-32 of the body and the state. */
  crc: number;
}

async function readFooter(fd: number, path: string): Promise<Footer> {
  const { size } = await fstatFd(fd);
  if (size < FOOTER_BYTES) throw new StoredFileError(`${path} is too short to be a stored message (${size} bytes)`);
  const footerBytes = Buffer.allocUnsafe(FOOTER_BYTES);
  await readFd(fd, footerBytes, size - FOOTER_BYTES);
  const footer = FOOTER.exec(footerBytes.toString("latin1"));
  const bodyBytes = Number(footer?.[1]);
  const stateBytes = Number(footer?.[2]);
  if (!footer || bodyBytes + stateBytes + FOOTER_BYTES !== size) {
    throw new StoredFileError(`${path} does not end with a valid "${FOOTER_MAGIC}" footer`);
  }
  return { bodyBytes, stateBytes, crc: Number.parseInt(footer[3] ?? "", 16) };
}

/** Whether a stored file has a footer, and (with `checksum`) whether its content matches it. */
async function storedFileIsWhole(path: string, { checksum }: { checksum: boolean }): Promise<boolean> {
  const fd = await openFd(path, "r");
  try {
    let footer: Footer;
    try {
      footer = await readFooter(fd, path);
    } catch (error) {
      if (error instanceof StoredFileError) return false;
      throw error;
    }
    if (!checksum) return true;
    const length = footer.bodyBytes + footer.stateBytes;
    const buffer = Buffer.allocUnsafe(Math.min(VERIFY_CHUNK_BYTES, Math.max(1, length)));
    let crc = 0;
    for (let position = 0; position < length; ) {
      const read = await readFd(fd, buffer.subarray(0, Math.min(buffer.length, length - position)), position);
      if (read === 0) return false;
      crc = crc32(buffer.subarray(0, read), crc);
      position += read;
    }
    return crc === footer.crc;
  } finally {
    await closeFd(fd);
  }
}

/**
 * Reads a stored file's state, and its message head unless `withHead` is false, without reading
 * the message body.
 */
async function readStored(path: string, withHead: true): Promise<{ state: MessageState; head: MessageHead }>;
async function readStored(path: string, withHead: false): Promise<{ state: MessageState }>;
async function readStored(path: string, withHead: boolean): Promise<{ state: MessageState; head?: MessageHead }> {
  const fd = await openFd(path, "r");
  try {
    const { bodyBytes, stateBytes } = await readFooter(fd, path);
    const stateText = Buffer.allocUnsafe(stateBytes);
    await readFd(fd, stateText, bodyBytes);
    const state = JSON.parse(stateText.toString("utf8")) as MessageState;
    return withHead ? { state, head: await readMessageHeadAt(fd, bodyBytes) } : { state };
  } finally {
    await closeFd(fd);
  }
}

/**
 * The append-only log of completed messages' traces, one file per UTC day of completion. One
 * file instead of one per message saves an open, a write and a close per message; lines that
 * arrive while a write is under way go out together in the next one.
 */
class TraceLog {
  private file: { day: string; fd: Promise<number> } | null = null;
  private queued: { day: string; line: string; done: { resolve: () => void; reject: (error: unknown) => void } }[] = [];
  private writing: Promise<void> | null = null;

  constructor(private readonly dir: string) {}

  /** Resolves once `line` is written (not fsync'd) to the log of the day of `at` (ISO 8601). */
  append(at: string, line: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queued.push({ day: at.slice(0, 10), line: `${line}\n`, done: { resolve, reject } });
      this.writing ??= this.drain();
    });
  }

  /** Closes the log of `day` if it is open, before its file is deleted. */
  async forget(day: string): Promise<void> {
    await this.writing;
    if (this.file?.day === day) await this.closeFile();
  }

  async close(): Promise<void> {
    await this.writing;
    await this.closeFile();
  }

  private async drain(): Promise<void> {
    while (this.queued.length > 0) {
      const day = this.queued[0]!.day;
      // One write per day present (a batch spans two only around midnight).
      const batch = this.queued.filter((entry) => entry.day === day);
      this.queued = this.queued.filter((entry) => entry.day !== day);
      try {
        if (this.file?.day !== day) {
          await this.closeFile();
          this.file = { day, fd: openFd(join(this.dir, `traces-${day}.jsonl`), "a") };
        }
        // O_APPEND puts the lines at the end whatever the position says.
        await writeAll(await this.file.fd, Buffer.from(batch.map((entry) => entry.line).join("")), 0);
        for (const entry of batch) entry.done.resolve();
      } catch (error) {
        // The next batch opens the file again.
        await this.closeFile().catch(() => undefined);
        for (const entry of batch) entry.done.reject(error);
      }
    }
    this.writing = null;
  }

  private async closeFile(): Promise<void> {
    const file = this.file;
    this.file = null;
    await closeOpened(file?.fd ?? null);
  }
}

function snapshotText(snapshot: Snapshot): string {
  return JSON.stringify({
    ruleSet: toDescribeJson(snapshot.ruleSet),
    // Sorted, so that the same identities listed in another order are the same snapshot.
    identities: {
      addresses: [...snapshot.identities.addresses].sort(),
      domains: [...snapshot.identities.domains].sort(),
    },
  });
}

function stringList(value: unknown, what: string): readonly string[] {
  if (!Array.isArray(value) || !value.every((item) => typeof item === "string")) {
    throw new TypeError(`${what} is not a list of strings`);
  }
  return Object.freeze([...value]);
}

/**
 * Message files created, and their directory entries made durable, before a message needs one.
 * Creating the file and fsyncing queue/ at the start of DATA cost a trip to the I/O threads and,
 * on ext4, a journal commit that the fdatasync behind it then waited for: about a tenth of a
 * millisecond of every 250 with one session. A reserved file is empty and has no footer, so a
 * crash leaves nothing that open() would take for a message: it deletes it with the other
 * accepts cut short.
 */
class ReservedFiles {
  private readonly ready: { id: string; fd: number }[] = [];
  private readonly claimed = new Map<string, number>();
  private creating = 0;
  private closed = false;
  /** Set by the first claim: until IDs are claimed from here, nothing is reserved. */
  private fresh: (() => string) | null = null;
  private readonly pending = new Set<Promise<void>>();

  constructor(
    private readonly queue: string,
    private readonly sync: DirectorySync,
  ) {}

  /** The ID of a reserved file, or a new ID (`fresh`) while none is ready. */
  claim(fresh: () => string): string {
    this.fresh = fresh;
    const file = this.ready.shift();
    if (!file) {
      this.refill();
      return fresh();
    }
    this.claimed.set(file.id, file.fd);
    return file.id;
  }

  /**
   * Creates files up to the reserve's size. Called once an accept has its answer rather than
   * when a file is claimed: the directory fsync would otherwise share the disk's journal with
   * the fdatasync that the claiming message's 250 waits for.
   */
  refill(): void {
    const fresh = this.fresh;
    // Refilled by halves, so that several creates share one directory fsync (group commit).
    if (!fresh || this.ready.length + this.creating > RESERVED_FILES / 2) return;
    while (!this.closed && this.ready.length + this.creating < RESERVED_FILES) this.create(fresh);
  }

  /** The descriptor of the claimed file of `id` (once), or undefined if `id` is not one. */
  take(id: string): number | undefined {
    const fd = this.claimed.get(id);
    this.claimed.delete(id);
    return fd;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.pending);
    const unused = [...this.ready, ...[...this.claimed].map(([id, fd]) => ({ id, fd }))];
    this.ready.length = 0;
    this.claimed.clear();
    for (const { id, fd } of unused) await this.discard(id, fd);
  }

  private create(fresh: () => string): void {
    this.creating++;
    const id = fresh();
    const creating = (async () => {
      const fd = await openFd(join(this.queue, `${id}.msg`), "wx");
      try {
        await this.sync.sync();
      } catch (error) {
        await this.discard(id, fd);
        throw error;
      }
      if (this.closed) await this.discard(id, fd);
      else this.ready.push({ id, fd });
    })()
      // A disk that fails here fails the accept too, which opens its own file and reports why.
      .catch(() => undefined)
      .finally(() => {
        this.creating--;
        this.pending.delete(creating);
      });
    this.pending.add(creating);
  }

  async discard(id: string, fd: number): Promise<void> {
    await closeFd(fd).catch(() => undefined);
    await rm(join(this.queue, `${id}.msg`), { force: true });
  }
}

/**
 * The rule-set snapshot a message is to be evaluated against is not on disk. No retry brings it
 * back, so it is no disk trouble (it has no errno code) but the message's end.
 */
export class SnapshotGone extends Error {
  constructor(
    readonly hash: string,
    path: string,
  ) {
    super(`snapshot ${hash} is missing (${path})`);
  }
}

/** Thrown by Spool.open when another live process owns the spool. */
export class SpoolLocked extends Error {
  constructor(
    readonly dir: string,
    readonly owner: number,
  ) {
    super(`spool ${dir} is in use by process ${owner} (is another receiptd serve running on it?)`);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists, under another user.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function lockOwner(path: string): Promise<number | null> {
  try {
    const pid = Number.parseInt(await readFile(path, "utf8"), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch (error) {
    if (isMissing(error)) return null;
    throw error;
  }
}

/**
 * Makes this process the spool's owner. The lock is linked into place from a file already
 * holding the PID, so that it is never seen empty; one naming a process that is gone (a crash)
 * is taken over. This process's own PID counts as stale too: a spool opened again in-process
 * after a simulated crash, or a PID reused since a real one.
 */
async function lockSpool(dir: string): Promise<string> {
  const path = join(dir, "lock");
  const mine = join(dir, `lock.${process.pid}`);
  await writeFile(mine, `${process.pid}\n`);
  try {
    for (;;) {
      try {
        await link(mine, path);
        return path;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      }
      const owner = await lockOwner(path);
      if (owner !== null && owner !== process.pid && isAlive(owner)) throw new SpoolLocked(dir, owner);
      await rm(path, { force: true });
    }
  } finally {
    await rm(mine, { force: true });
  }
}

/** Tells apart the temporary files of concurrent snapshot saves in this process. */
let temporaryFiles = 0;

export class Spool {
  private readonly dir: string;
  private readonly fsync: boolean;
  private readonly tmp: string;
  private readonly queue: string;
  private readonly areas: Record<Area, string>;
  private readonly snapshots: string;
  private readonly queueSync: DirectorySync;
  private readonly reserved: ReservedFiles;
  private readonly deadSync: DirectorySync;
  private readonly snapshotSync: DirectorySync;
  /** Snapshots known to be on disk durably. */
  private readonly savedSnapshots = new Set<string>();
  private readonly savingSnapshots = new Map<string, Promise<void>>();
  private readonly loadedSnapshots = new Map<string, Promise<Snapshot>>();
  /** Messages in queue/: committed, processing not finished. */
  private readonly pendingIds = new Set<string>();
  /**
   * Pending messages found at open() whose content is not checked against its checksum yet: a
   * crash while one was being accepted may have left a footer over a body not all on disk.
   */
  private readonly unverified = new Set<string>();
  /** Pending messages with a queue/<id>.journal, so that moving a message costs no probe for one. */
  private readonly journaled = new Set<string>();
  private readonly fresh = new Map<string, { state: MessageState; head: MessageHead }>();
  private readonly traces: TraceLog;
  /** An acceptor process's spool: it only stores messages; the daemon's own spool tracks them. */
  private readonly acceptsOnly: boolean;
  /** The lock file this spool owns the directory by; null for an acceptor's spool. */
  private lock: string | null = null;

  private constructor(options: SpoolOptions, acceptsOnly = false) {
    this.acceptsOnly = acceptsOnly;
    this.dir = options.dir;
    this.fsync = options.fsync ?? true;
    this.tmp = join(this.dir, "tmp");
    this.queue = join(this.dir, "queue");
    this.areas = { done: join(this.dir, "done"), dead: join(this.dir, "dead") };
    this.snapshots = join(this.dir, "snapshots");
    this.queueSync = new DirectorySync(this.queue, this.fsync);
    this.reserved = new ReservedFiles(this.queue, this.queueSync);
    this.deadSync = new DirectorySync(this.areas.dead, this.fsync);
    this.snapshotSync = new DirectorySync(this.snapshots, this.fsync);
    this.traces = new TraceLog(this.areas.done);
  }

  /**
   * Opens (creating) the spool and puts it in order after a crash: tmp/ is emptied, and half-done
   * moves to done/ or dead/ are finished.
   */
  static async open(options: SpoolOptions): Promise<Spool> {
    await mkdir(options.dir, { recursive: true });
    const lock = await lockSpool(options.dir);
    const spool = new Spool(options);
    spool.lock = lock;
    try {
      await spool.prepare();
    } catch (error) {
      await spool.unlock();
      throw error;
    }
    return spool;
  }

  private async unlock(): Promise<void> {
    const lock = this.lock;
    this.lock = null;
    // Only while it is still ours: a spool reopened in this process may hold it now.
    if (lock !== null && (await lockOwner(lock)) === process.pid) await rm(lock, { force: true });
  }

  /**
   * The spool of a running daemon, for an acceptor process beside it to store messages in. There
   * is no recovery (the daemon did that at open(), and recovering now would remove files that
   * other acceptors are writing) and no index of pending messages: the daemon learns of each
   * message from the acceptor and `adopt`s it.
   */
  static forAcceptance(options: SpoolOptions): Spool {
    return new Spool(options, true);
  }

  /** A message another process accepted into queue/: pending from now on, read from disk. */
  adopt(id: string): void {
    checkId(id);
    this.pendingIds.add(id);
  }

  /**
   * Adopts every committed message in queue/ that is not pending yet, and returns their IDs: after
   * an acceptor process died, the messages it answered 250 but had not reported yet. Files still
   * being written (no footer yet) are left to their writers, and those of a dead acceptor to the
   * next open().
   */
  async adoptUnreported(): Promise<string[]> {
    const found: string[] = [];
    for (const name of await readdir(this.queue)) {
      const match = QUEUE_FILE.exec(name);
      if (!match || match[2] !== "msg") continue;
      const id = match[1] ?? "";
      if (this.pendingIds.has(id)) continue;
      // Gone (finished since the listing) or unreadable: not for adopting now.
      if (!(await storedFileIsWhole(join(this.queue, name), { checksum: false }).catch(() => false))) continue;
      this.pendingIds.add(id);
      found.push(id);
    }
    return found;
  }

  /**
   * The ID for the next message to accept. Once IDs are taken from here, the spool keeps files
   * created ahead for them (they appear in queue/ as empty files until used or closed), and
   * `accept` for such an ID starts writing at once. `fresh` makes a new ID.
   */
  claimMessageId(fresh: () => string): string {
    return this.reserved.claim(fresh);
  }

  /** Removes the reserved files and closes the directories kept open for fsyncs; the spool is not used afterwards. */
  async close(): Promise<void> {
    await this.reserved.close();
    await Promise.all([this.queueSync, this.deadSync, this.snapshotSync, this.traces].map((open) => open.close()));
    await this.unlock();
  }

  private async prepare(): Promise<void> {
    const directories = [this.tmp, this.queue, this.areas.done, this.areas.dead, this.snapshots];
    for (const directory of directories) await mkdir(directory, { recursive: true });
    if (this.fsync) {
      // The subdirectories' own entries, in case they were just created.
      await fsyncDirectory(this.dir);
      await fsyncDirectory(join(this.dir, ".."));
    }
    for (const name of await readdir(this.tmp)) await rm(join(this.tmp, name), { recursive: true, force: true });
    await this.recoverQueue();
  }

  private async recoverQueue(): Promise<void> {
    const files = new Map<string, Set<string>>();
    for (const name of await readdir(this.queue)) {
      const match = QUEUE_FILE.exec(name);
      if (!match) continue;
      const [, id = "", kind = ""] = match;
      const kinds = files.get(id) ?? new Set<string>();
      kinds.add(kind);
      files.set(id, kinds);
    }
    const touched = new Set<string>();
    const move = async (id: string, kind: string, from: string, to: string) => {
      await rename(join(from, `${id}.${kind}`), join(to, `${id}.${kind}`));
      touched.add(to);
    };
    let areaDirectories: string[] | null = null;
    const holding = async (id: string, kind: string): Promise<string | null> => {
      areaDirectories ??= await this.areaDirectories();
      for (const directory of areaDirectories) if (await exists(join(directory, `${id}.${kind}`))) return directory;
      return null;
    };
    for (const [id, kinds] of files) {
      if (!kinds.has("msg")) {
        // A journal whose message is gone: its move out of queue/ finished, and a crash undid the
        // journal's part of it (the moves are not fsync'd, so a crash may keep one rename and undo
        // another); with no message anywhere it is an orphan.
        const directory = await holding(id, "msg");
        if (directory) await move(id, "journal", this.queue, directory);
        else await rm(join(this.queue, `${id}.journal`), { force: true });
        touched.add(this.queue);
        continue;
      }
      if (await exists(join(this.areas.dead, `${id}.trace.json`))) {
        for (const kind of ["msg", "journal"]) if (kinds.has(kind)) await move(id, kind, this.queue, this.areas.dead);
        touched.add(this.queue);
        continue;
      }
      if (!kinds.has("journal") && !(await storedFileIsWhole(join(this.queue, `${id}.msg`), { checksum: false }))) {
        // Cut off before its footer: its accept never committed, so it was never answered 250.
        await rm(join(this.queue, `${id}.msg`), { force: true });
        touched.add(this.queue);
        continue;
      }
      if (!kinds.has("journal")) {
        // The journal moved ahead of its message, and a crash undid the trace that went before both.
        const ahead = await holding(id, "journal");
        if (ahead) {
          await move(id, "journal", ahead, this.queue);
          kinds.add("journal");
        }
      }
      this.pendingIds.add(id);
      // Its checksum is checked when it is first read: reading every message at start-up would
      // hold the listener back for as long as the backlog takes to read.
      this.unverified.add(id);
      if (kinds.has("journal")) this.journaled.add(id);
    }
    for (const directory of touched) {
      if (directory === this.queue) await this.queueSync.sync();
      else if (this.fsync) await fsyncDirectory(directory);
    }
  }

  /**
   * Where finished messages are: dead/, each done/<hour>/, and done/ itself, which held them
   * before they were filed by hour.
   */
  private async areaDirectories(): Promise<string[]> {
    const hours = (await readdir(this.areas.done)).filter((name) => DONE_HOUR.test(name));
    return [this.areas.dead, ...hours.map((hour) => join(this.areas.done, hour)), this.areas.done];
  }

  /**
   * Stores the snapshot once, under the SHA-256 of its JSON, and returns that hash. The rule set
   * is kept as SES JSON and parsed again on load, so that snapshots outlive changes to the model.
   */
  async saveSnapshot(snapshot: Snapshot): Promise<string> {
    const text = snapshotText(snapshot);
    const hash = sha256(text);
    if (this.savedSnapshots.has(hash)) return hash;
    let saving = this.savingSnapshots.get(hash);
    if (!saving) {
      saving = this.writeSnapshot(hash, text).finally(() => this.savingSnapshots.delete(hash));
      this.savingSnapshots.set(hash, saving);
    }
    await saving;
    return hash;
  }

  private async writeSnapshot(hash: string, text: string): Promise<void> {
    const path = join(this.snapshots, `${hash}.json`);
    if (!(await exists(path))) {
      // Acceptor processes (or two spools in one process) may save the same snapshot at once.
      const temporary = join(this.tmp, `snapshot-${hash}-${process.pid}-${temporaryFiles++}.json`);
      await this.writeSmallFile(temporary, text, { durable: true });
      await rename(temporary, path);
      await this.snapshotSync.sync();
    }
    this.savedSnapshots.add(hash);
  }

  async loadSnapshot(hash: string): Promise<Snapshot> {
    checkHash(hash);
    let loading = this.loadedSnapshots.get(hash);
    if (!loading) {
      loading = this.readSnapshot(hash);
      this.loadedSnapshots.set(hash, loading);
      // A failed read (a disk error) may succeed later; only successes are worth keeping.
      loading.catch(() => this.loadedSnapshots.delete(hash));
    }
    return loading;
  }

  private async readSnapshot(hash: string): Promise<Snapshot> {
    const path = join(this.snapshots, `${hash}.json`);
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (error) {
      throw isMissing(error) ? new SnapshotGone(hash, path) : error;
    }
    const source = `snapshot ${hash}`;
    if (sha256(text) !== hash) throw new Error(`${source} does not match its hash`);
    const doc = JSON.parse(text) as { ruleSet?: unknown; identities?: { addresses?: unknown; domains?: unknown } };
    const parsed = parseRuleSet(doc.ruleSet);
    if (!parsed.ok) throw new RuleSetValidationError(source, parsed.issues);
    this.savedSnapshots.add(hash);
    return Object.freeze({
      ruleSet: parsed.value,
      identities: Object.freeze({
        addresses: stringList(doc.identities?.addresses, `${source}: identities.addresses`),
        domains: stringList(doc.identities?.domains, `${source}: identities.domains`),
      }),
    });
  }

  /**
   * Stores one message durably. Only when this resolves may the listener answer 250. When `body`
   * throws (size limit, smuggling, client gone), nothing is left behind and the error is rethrown.
   */
  async accept(
    state: MessageState,
    body: AsyncIterable<Buffer>,
    options: {
      /**
       * What can only be known once the whole body has been read (authentication verdicts and
       * headers), merged into the state before it is written after the message.
       */
      completeState?: () => Promise<Partial<Pick<MessageState, "verdicts" | "receiptHeaders">>>;
    } = {},
  ): Promise<{ size: number }> {
    const id = state.messageId;
    const path = join(this.queue, `${id}.msg`);
    const reservedFd = this.reserved.take(id);
    try {
      checkId(id);
      checkHash(state.snapshot);
      // A message whose snapshot is missing could be accepted but never evaluated.
      if (!this.savedSnapshots.has(state.snapshot) && !(await exists(join(this.snapshots, `${state.snapshot}.json`)))) {
        throw new Error(`snapshot ${state.snapshot} was not saved`);
      }
    } catch (error) {
      if (reservedFd !== undefined) await this.reserved.discard(id, reservedFd);
      throw error;
    }

    const { completeState } = options;
    const keepsHead = !this.acceptsOnly;
    // A copy of the header block, never a reference to a chunk: a chunk kept until the message
    // is stored outlives the young generation, and then its memory (tens of KB) waits for a full
    // garbage collection; with large messages that meant one every few dozen messages.
    let prefix = Buffer.alloc(0);
    let lineStart = 0;
    let headerSeen = false;
    let bodyCrc = 0;
    async function* keepingPrefix(): AsyncGenerator<Buffer> {
      for await (const chunk of body) {
        if (keepsHead && !headerSeen && prefix.length < FRESH_HEAD_BYTES) {
          const grown = Buffer.concat([prefix, chunk.subarray(0, FRESH_HEAD_BYTES - prefix.length)]);
          const scan = scanHeaderEnd(grown, lineStart, grown.length);
          headerSeen = scan.end !== -1;
          lineStart = scan.lineStart;
          prefix = headerSeen ? Buffer.from(grown.subarray(0, scan.end)) : grown;
        }
        bodyCrc = crc32(chunk, bodyCrc);
        yield chunk;
      }
    }
    let finalState = state;
    let size: number;
    const fd = reservedFd ?? (await openFd(path, "wx"));
    // The file's directory entry is made durable while the body streams in, not after it.
    const entryDurable = reservedFd === undefined ? this.queueSync.sync() : Promise.resolve();
    entryDurable.catch(() => undefined);
    let closing: Promise<void> | null = null;
    try {
      size = await writeStream(fd, keepingPrefix(), async (bodyBytes) => {
        if (completeState) finalState = { ...state, ...(await completeState()) };
        return storedTrailer(bodyBytes, bodyCrc, finalState);
      });
      if (this.fsync) await fdatasync(fd);
      // Nothing written can be lost by a failing close once the data is durable, so its error
      // is not the message's, and the 250 does not wait for it.
      closing = closeFd(fd).catch(() => undefined);
      await entryDurable;
    } catch (error) {
      // Not answered 250, so it must not be processed either: the sender will try again.
      await (closing ?? closeFd(fd).catch(() => undefined));
      await rm(path, { force: true });
      throw error;
    }
    if (reservedFd !== undefined) this.reserved.refill();
    if (!keepsHead) return { size };
    this.pendingIds.add(id);
    // A prefix cut inside the header block would pass for a whole header block.
    if (headerSeen || prefix.length === size) this.remember(finalState, prefix, size);
    return { size };
  }

  private remember(state: MessageState, prefix: Buffer, size: number): void {
    let head: MessageHead;
    try {
      head = parseMessageHead(prefix, { maxHeaderBytes: FRESH_HEAD_BYTES });
    } catch {
      return; // read() will meet the same trouble on disk and report it
    }
    const headerBlock = Buffer.from(head.headerBlock);
    this.fresh.set(state.messageId, { state, head: { ...head, headerBlock, size } });
    if (this.fresh.size > FRESH_ENTRIES) this.fresh.delete(this.fresh.keys().next().value as string);
  }

  /** Creates or replaces (a move repeated after a crash finds its trace there already) `path`. */
  private async writeSmallFile(path: string, text: string, { durable }: { durable: boolean }): Promise<void> {
    const fd = await openFd(path, "w");
    try {
      await writeAll(fd, Buffer.from(text), 0);
      if (durable && this.fsync) await fdatasync(fd);
    } finally {
      await closeFd(fd);
    }
  }

  /** Message IDs in queue/ (committed, not finished), oldest received first. */
  async pending(): Promise<string[]> {
    const found: { id: string; receivedAt: number }[] = [];
    for (const id of this.pendingIds) {
      let receivedAt: number;
      try {
        receivedAt = Date.parse((await readStored(join(this.queue, `${id}.msg`), false)).state.receivedAt);
      } catch {
        // Listed first, so that whatever is wrong with it is reported at once.
        receivedAt = Number.NEGATIVE_INFINITY;
      }
      found.push({ id, receivedAt: Number.isNaN(receivedAt) ? Number.NEGATIVE_INFINITY : receivedAt });
    }
    found.sort((a, b) => a.receivedAt - b.receivedAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return found.map(({ id }) => id);
  }

  /** A pending message: its state, the outcomes recorded so far and a handle on its bytes. */
  async read(id: string): Promise<SpooledMessage> {
    checkId(id);
    const path = join(this.queue, `${id}.msg`);
    const fresh = this.fresh.get(id);
    if (fresh) {
      // Only the first read of a message can be served from memory: no journal exists before it.
      this.fresh.delete(id);
      const { state, head } = fresh;
      return { state, outcomes: [], message: fileMessage(path, head, { receivedAt: new Date(state.receivedAt), verdicts: state.verdicts }) };
    }
    if (this.unverified.has(id)) {
      if (!(await storedFileIsWhole(path, { checksum: true }))) await this.discardUncommitted(id, path);
      this.unverified.delete(id);
    }
    const { state, head } = await readStored(path, true);
    if (state.messageId !== id) throw new Error(`queue/${id}.msg holds the state of ${JSON.stringify(state.messageId)}`);
    const outcomes = await this.readJournal(id);
    const message = fileMessage(path, head, { receivedAt: new Date(state.receivedAt), verdicts: state.verdicts });
    return { state, outcomes, message };
  }

  /**
   * A message found at open() whose content does not match its footer's checksum was being
   * accepted when the machine went down: it was never answered 250, and the sender tries again.
   * One that had started processing was committed, so its damage is reported instead.
   */
  private async discardUncommitted(id: string, path: string): Promise<never> {
    if (this.journaled.has(id)) throw new StoredFileError(`${path} does not match its checksum`);
    await rm(path, { force: true });
    this.pendingIds.delete(id);
    this.unverified.delete(id);
    throw Object.assign(new Error(`${path} was never committed (its content does not match its checksum); removed`), { code: "ENOENT" });
  }

  /**
   * The journal's outcomes up to the first line that is not a complete, valid, done outcome: a
   * crash can tear the last line. The tail from there is cut off, so that the next append does
   * not glue a good line onto the torn one.
   */
  private async readJournal(id: string): Promise<ActionOutcome[]> {
    const path = join(this.queue, `${id}.journal`);
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch (error) {
      if (isMissing(error)) return [];
      throw error;
    }
    this.journaled.add(id);
    const outcomes: ActionOutcome[] = [];
    let good = 0;
    while (good < bytes.length) {
      const end = bytes.indexOf(0x0a, good);
      if (end === -1) break;
      let outcome: unknown;
      try {
        outcome = JSON.parse(bytes.toString("utf8", good, end));
      } catch {
        break;
      }
      if (!isDoneOutcome(outcome)) break;
      outcomes.push(outcome);
      good = end + 1;
    }
    if (good < bytes.length) {
      const handle = await open(path, "r+");
      try {
        await handle.truncate(good);
        if (this.fsync) await handle.datasync();
      } finally {
        await handle.close();
      }
    }
    return outcomes;
  }

  /**
   * Appends a done outcome to the message's journal and makes it durable before returning, so
   * that after a kill -9 the action is known done. Failed outcomes are not journaled: replayed,
   * they would fail the message again instead of retrying the action.
   */
  async recordOutcome(id: string, outcome: ActionOutcome): Promise<void> {
    checkId(id);
    if (outcome.status !== "done") throw new TypeError("only done outcomes are recorded; a failed action is retried");
    // Once a journal exists, the copy kept in memory (which has no outcomes) is out of date.
    this.fresh.delete(id);
    const fd = await openFd(join(this.queue, `${id}.journal`), "a");
    let created: boolean;
    try {
      this.journaled.add(id);
      created = (await fstatFd(fd)).size === 0;
      // O_APPEND puts the line at the end whatever the position says.
      await writeAll(fd, Buffer.from(`${JSON.stringify(outcome)}\n`), 0);
      if (this.fsync) await fdatasync(fd);
    } finally {
      await closeFd(fd);
    }
    // The first line created the file; its directory entry must be durable as well.
    if (created) await this.queueSync.sync();
  }

  /** Moves a message whose evaluation completed or stopped to done/<hour>/, with its trace. */
  async complete(id: string, trace: EvaluationTrace): Promise<void> {
    await this.finish(id, "done", { at: new Date().toISOString(), trace });
  }

  /** Moves a message whose processing was abandoned to dead/, with its trace (if any) and why. */
  async deadLetter(id: string, trace: EvaluationTrace | null, reason: string): Promise<void> {
    await this.finish(id, "dead", { at: new Date().toISOString(), reason, trace });
  }

  private async finish(id: string, area: Area, record: { at: string; [field: string]: unknown }): Promise<void> {
    checkId(id);
    if (!this.pendingIds.has(id)) {
      throw Object.assign(new Error(`message ${id} is not pending in ${this.queue}`), { code: "ENOENT" });
    }
    this.fresh.delete(id);
    const target = area === "dead" ? this.areas.dead : join(this.areas.done, record.at.slice(0, 13));
    if (area === "dead") {
      const temporary = join(this.tmp, `${id}.trace.json`);
      await this.writeSmallFile(temporary, JSON.stringify(record), { durable: true });
      await rename(temporary, join(target, `${id}.trace.json`));
      await this.deadSync.sync();
    } else {
      // Not made durable (see the commit points above): a crash can lose the line, or leave it
      // torn at the end of the file, where readers skip it.
      await this.traces.append(record.at, JSON.stringify({ messageId: id, ...record }));
    }
    // The message goes last: in an area, a .msg means its move is complete.
    if (this.journaled.has(id)) await this.moveInto(target, `${id}.journal`);
    this.journaled.delete(id);
    await this.moveInto(target, `${id}.msg`);
    this.pendingIds.delete(id);
  }

  /**
   * Moves a file out of queue/. A done/<hour>/ is made when the first file of its hour finds it
   * missing (or a sweep has removed it since), which costs one failed rename an hour rather than a
   * check for every message.
   */
  private async moveInto(target: string, name: string): Promise<void> {
    try {
      await rename(join(this.queue, name), join(target, name));
    } catch (error) {
      // Asked of the file, not the directory: another message of the hour may have made it since.
      if (!isMissing(error) || target === this.areas.dead || !(await exists(join(this.queue, name)))) throw error;
      await mkdir(target, { recursive: true });
      await rename(join(this.queue, name), join(target, name));
    }
  }

  /**
   * Deletes the done/ messages received more than `retentionMs` before `now`; dead/ is kept for
   * operators. Returns how many messages were deleted.
   *
   * Messages are filed by the hour they completed in, which is never before they were received, so
   * an hour whose end is past the retention period holds only expired messages: it goes whole,
   * without a message being read. A message is kept for at most an hour (and its processing time)
   * beyond the retention period. Files are deleted one at a time, so that the sweep holds one of
   * libuv's threads at most, not all of them, while the listener waits on them for its fsyncs.
   */
  async sweep(now: Date, retentionMs: number = DEFAULT_RETENTION_MS): Promise<number> {
    const done = this.areas.done;
    let deleted = 0;
    for (const name of await readdir(done)) {
      const day = TRACE_LOG.exec(name)?.[1];
      // A day's traces go once its last possible entry is older than the retention period.
      if (day !== undefined && now.getTime() - (Date.parse(`${day}T00:00:00Z`) + DAY_MS) > retentionMs) {
        await this.traces.forget(day);
        await rm(join(done, name), { force: true });
      }
      if (DONE_HOUR.test(name) && now.getTime() - (Date.parse(`${name}:00:00Z`) + HOUR_MS) > retentionMs) {
        deleted += await this.deleteHour(join(done, name));
      }
      // Spools written before messages were filed by hour have them in done/ itself.
      const id = AREA_FILE.exec(name)?.[1];
      if (id !== undefined && name.endsWith(".msg") && now.getTime() - (await this.receivedAt(join(done, name))) > retentionMs) {
        await rm(join(done, `${id}.journal`), { force: true });
        await rm(join(done, name), { force: true });
        deleted++;
      }
    }
    return deleted;
  }

  private async deleteHour(directory: string): Promise<number> {
    let deleted = 0;
    // No directory fsync: a deletion a crash undoes is simply done again by the next sweep.
    for (const name of await readdir(directory)) {
      await rm(join(directory, name), { force: true });
      if (name.endsWith(".msg")) deleted++;
    }
    await rm(directory, { recursive: true, force: true });
    return deleted;
  }

  private async receivedAt(messagePath: string): Promise<number> {
    try {
      const time = Date.parse((await readStored(messagePath, false)).state.receivedAt);
      if (!Number.isNaN(time)) return time;
    } catch {
      // An unreadable state still ages: by the time it was written, which is when it was received.
    }
    return (await stat(messagePath)).mtimeMs;
  }

  /** Messages in queue/: committed, processing not finished. */
  depth(): number {
    return this.pendingIds.size;
  }
}

function isDoneOutcome(value: unknown): value is ActionOutcome {
  return value !== null && typeof value === "object" && (value as { status?: unknown }).status === "done";
}
