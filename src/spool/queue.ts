/**
 * The daemon's side of the spool (Postfix's qmgr): the committed messages whose processing has
 * not finished, their journals, and their moves to done/ or dead/ (docs/behaviour.md §4 and §8).
 *
 * Commit points:
 *  - complete: the trace is appended to the day's log, then .journal and .msg move to the hour's
 *    directory in done/. None of it is fsync'd: every action's outcome is already in the
 *    fdatasync'd journal, so should a crash undo the move, processing the message again runs no
 *    action twice and only redoes the move (its trace may then appear twice).
 *  - deadLetter: dead/<id>.trace.json is made durable, then .journal and .msg move to dead/, so
 *    that a crash cannot bring an abandoned message back to be retried: recovery finishes a move
 *    it finds half done, the trace beside a message in queue/ saying where it was going.
 */
import { mkdir, readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { fileMessage } from "../actions/message.js";
import type { ReceivedMessage } from "../actions/message.js";
import type { MessageHead } from "../mail/headers.js";
import type { EvaluationTrace } from "../rules/evaluate.js";
import type { ActionOutcome } from "../rules/executor.js";
import { DirectorySync } from "./dir-sync.js";
import { writeSmallFile } from "./fd.js";
import { StoredFileError, readStored, storedFileIsWhole, writeRestated } from "./format.js";
import type { MessageState } from "./format.js";
import { appendOutcome, readJournal } from "./journal.js";
import type { Journal, ScanRecord } from "./journal.js";
import { QUEUE_FILE, checkId, exists, isMissing } from "./layout.js";
import type { Area, SpoolPaths } from "./layout.js";
import type { Recovered } from "./recovery.js";
import type { Snapshot, Snapshots } from "./snapshots.js";
import { DEFAULT_RETENTION_MS, sweepDone } from "./sweep.js";
import { TraceLog } from "./trace.js";

export interface SpooledMessage {
  state: MessageState;
  /** Outcomes recorded done, in execution order: what `evaluate` takes as `recorded`. */
  outcomes: ActionOutcome[];
  /** The verdicts of the scan, once journaled. */
  scan: ScanRecord | null;
  message: ReceivedMessage;
}

/**
 * The message is not in queue/ (finished, removed, or found never committed and removed): there
 * is nothing left to process. Not disk trouble, so no retry.
 */
export class MessageGone extends Error {
  constructor(
    readonly messageId: string,
    message: string,
  ) {
    super(message);
  }
}

/** A requeue that cannot be done: the message is not dead, or its journal forbids the change. */
export class RequeueRefused extends Error {}

/**
 * A message is processed right after it is accepted, so its state and head are kept in memory
 * for that first read instead of being read back from disk, which would compete with the next
 * acceptances for the disk and the I/O threads. Bounded: older entries fall back to the disk.
 */
const JUST_STORED_ENTRIES = 1024;

export interface QueueParts {
  paths: SpoolPaths;
  fsync: boolean;
  queueSync: DirectorySync;
  snapshots: Snapshots;
}

export class Queue {
  private readonly paths: SpoolPaths;
  private readonly fsync: boolean;
  private readonly queueSync: DirectorySync;
  private readonly deadSync: DirectorySync;
  private readonly snapshots: Snapshots;
  /** Messages in queue/: committed, processing not finished. */
  private readonly pendingIds = new Set<string>();
  /**
   * Pending messages found by recovery whose content is not checked against its checksum yet: a
   * crash while one was being accepted may have left a footer over a body not all on disk.
   */
  private readonly unverified = new Set<string>();
  /** Pending messages with a queue/<id>.journal, so that moving a message costs no probe for one. */
  private readonly journaled = new Set<string>();
  private readonly justStored = new Map<string, { state: MessageState; head: MessageHead }>();
  private readonly traces: TraceLog;
  /** Resolved once recovery has handed over what it found (see adoptUnreported). */
  private readonly recovery: Promise<void>;
  private recoveryDone: () => void = () => undefined;

  constructor(parts: QueueParts) {
    this.recovery = new Promise((resolve) => (this.recoveryDone = resolve));
    this.paths = parts.paths;
    this.fsync = parts.fsync;
    this.queueSync = parts.queueSync;
    this.snapshots = parts.snapshots;
    this.deadSync = new DirectorySync(parts.paths.dead, parts.fsync);
    this.traces = new TraceLog(parts.paths.done);
  }

  /** The committed messages recovery found: pending, checked against their checksums when first read. */
  recovered(found: Recovered): void {
    for (const id of found.pending) {
      this.pendingIds.add(id);
      // Its checksum is checked when it is first read: reading every message at start-up would
      // hold the listener back for as long as the backlog takes to read.
      this.unverified.add(id);
    }
    for (const id of found.journaled) this.journaled.add(id);
    this.recoveryDone();
  }

  /** A message this process's writer has just stored, with its head if it was kept. */
  stored(state: MessageState, head: MessageHead | null): void {
    this.pendingIds.add(state.messageId);
    if (!head) return;
    this.justStored.set(state.messageId, { state, head });
    if (this.justStored.size > JUST_STORED_ENTRIES) this.justStored.delete(this.justStored.keys().next().value as string);
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
   * next recovery. Waits for this start's recovery: what it has yet to put in order (a message
   * half moved to dead/, say) is not for processing.
   */
  async adoptUnreported(): Promise<string[]> {
    await this.recovery;
    const found: string[] = [];
    for (const name of await readdir(this.paths.queue)) {
      const match = QUEUE_FILE.exec(name);
      if (!match || match[2] !== "msg") continue;
      const id = match[1] ?? "";
      if (this.pendingIds.has(id)) continue;
      // Gone (finished since the listing) or unreadable: not for adopting now.
      if (!(await storedFileIsWhole(join(this.paths.queue, name), { checksum: false }).catch(() => false))) continue;
      this.pendingIds.add(id);
      found.push(id);
    }
    return found;
  }

  loadSnapshot(hash: string): Promise<Snapshot> {
    return this.snapshots.load(hash);
  }

  /** Message IDs in queue/ (committed, not finished), oldest received first. */
  async pending(): Promise<string[]> {
    const found: { id: string; receivedAt: number }[] = [];
    for (const id of this.pendingIds) {
      let receivedAt: number;
      try {
        receivedAt = Date.parse((await readStored(join(this.paths.queue, `${id}.msg`), false)).state.receivedAt);
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
    const path = join(this.paths.queue, `${id}.msg`);
    const kept = this.justStored.get(id);
    if (kept) {
      // Only the first read of a message can be served from memory: no journal exists before it.
      this.justStored.delete(id);
      const { state, head } = kept;
      return { state, outcomes: [], scan: null, message: fileMessage(path, head, { receivedAt: new Date(state.receivedAt), verdicts: state.verdicts }) };
    }
    let stored: { state: MessageState; head: MessageHead };
    try {
      if (this.unverified.has(id)) {
        if (!(await storedFileIsWhole(path, { checksum: true }))) await this.discardUncommitted(id, path);
        this.unverified.delete(id);
      }
      stored = await readStored(path, true);
    } catch (error) {
      throw isMissing(error) ? new MessageGone(id, `${path} is gone: ${(error as Error).message}`) : error;
    }
    const { state, head } = stored;
    if (state.messageId !== id) throw new Error(`queue/${id}.msg holds the state of ${JSON.stringify(state.messageId)}`);
    const { outcomes, scan } = await this.readJournal(id);
    const message = fileMessage(path, head, { receivedAt: new Date(state.receivedAt), verdicts: state.verdicts });
    return { state, outcomes, scan, message };
  }

  /**
   * A message found by recovery whose content does not match its footer's checksum was being
   * accepted when the machine went down: it was never answered 250, and the sender tries again.
   * One that had started processing was committed, so its damage is reported instead.
   */
  private async discardUncommitted(id: string, path: string): Promise<never> {
    if (this.journaled.has(id)) throw new StoredFileError(`${path} does not match its checksum`);
    await rm(path, { force: true });
    this.pendingIds.delete(id);
    this.unverified.delete(id);
    throw new MessageGone(id, `${path} was never committed (its content does not match its checksum); removed`);
  }

  private async readJournal(id: string): Promise<Journal> {
    const journal = await readJournal(join(this.paths.queue, `${id}.journal`), this.fsync);
    if (journal === null) return { outcomes: [], scan: null };
    this.journaled.add(id);
    return journal;
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
    this.justStored.delete(id);
    const created = await appendOutcome(join(this.paths.queue, `${id}.journal`), outcome, this.fsync, () => this.journaled.add(id));
    // The first line created the file; its directory entry must be durable as well.
    if (created) await this.queueSync.sync();
  }

  /** Journals the verdicts of the message's scan, durably, before any action sees them. */
  async recordScan(id: string, scan: ScanRecord): Promise<void> {
    checkId(id);
    this.justStored.delete(id);
    const created = await appendOutcome(join(this.paths.queue, `${id}.journal`), { scan }, this.fsync, () => this.journaled.add(id));
    if (created) await this.queueSync.sync();
  }

  /** Moves a message whose evaluation completed or stopped to done/<hour>/, with its trace. */
  async complete(id: string, trace: EvaluationTrace): Promise<void> {
    await this.finish(id, "done", { at: new Date().toISOString(), trace });
  }

  /** Moves a message whose processing was abandoned to dead/, with its trace (if any), why, and why no failure DSN went out. */
  async deadLetter(id: string, trace: EvaluationTrace | null, reason: string, dsnNotSent?: string): Promise<void> {
    await this.finish(id, "dead", { at: new Date().toISOString(), reason, trace, ...(dsnNotSent === undefined ? {} : { dsnNotSent }) });
  }

  private async finish(id: string, area: Area, record: { at: string; [field: string]: unknown }): Promise<void> {
    checkId(id);
    if (!this.pendingIds.has(id)) throw new MessageGone(id, `message ${id} is not pending in ${this.paths.queue}`);
    this.justStored.delete(id);
    const target = area === "dead" ? this.paths.dead : join(this.paths.done, record.at.slice(0, 13));
    if (area === "dead") {
      const temporary = join(this.paths.tmp, `${id}.trace.json`);
      await writeSmallFile(temporary, JSON.stringify(record), { durable: this.fsync });
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
    const queue = this.paths.queue;
    try {
      await rename(join(queue, name), join(target, name));
    } catch (error) {
      // Asked of the file, not the directory: another message of the hour may have made it since.
      if (!isMissing(error) || target === this.paths.dead || !(await exists(join(queue, name)))) throw error;
      await mkdir(target, { recursive: true });
      await rename(join(queue, name), join(target, name));
    }
  }

  /**
   * Puts a dead letter back into queue/ with its journal, so that processing resumes at the first
   * action not journaled done. With `snapshot`, it is evaluated under that rule set snapshot
   * instead of its own, which only a message with no action done may be: the journal's
   * outcomes belong to the old one.
   *
   * Commit order: the trace goes first (durably), since recovery sends a message in queue/
   * whose dead/<id>.trace.json exists back to dead/; then the message, then its journal
   * (recovery brings back a journal left behind in dead/).
   */
  async requeue(id: string, options: { snapshot?: string } = {}): Promise<void> {
    checkId(id);
    if (this.pendingIds.has(id)) throw new RequeueRefused(`${id} is not a dead letter: it is still queued`);
    const from = (kind: string) => join(this.paths.dead, `${id}.${kind}`);
    const to = (kind: string) => join(this.paths.queue, `${id}.${kind}`);
    if (!(await exists(from("msg")))) throw new RequeueRefused(`${id} is not a dead letter: it is not in ${this.paths.dead}`);
    const journal = (await readJournal(from("journal"), this.fsync))?.outcomes ?? [];
    if (options.snapshot !== undefined) {
      if (journal.length > 0) {
        throw new RequeueRefused(
          `${id} has ${journal.length} action(s) journaled as done under the rule set it was accepted under: requeue it with that one, so that none runs again`,
        );
      }
      const { state } = await readStored(from("msg"), false);
      const temporary = join(this.paths.tmp, `${id}.msg`);
      await writeRestated(from("msg"), temporary, { ...state, snapshot: options.snapshot }, { durable: this.fsync });
      await rm(from("trace.json"), { force: true });
      await this.deadSync.sync();
      await rename(temporary, to("msg"));
      await rm(from("msg"), { force: true });
      await rm(from("journal"), { force: true });
    } else {
      await rm(from("trace.json"), { force: true });
      await this.deadSync.sync();
      await rename(from("msg"), to("msg"));
      if (journal.length > 0 || (await exists(from("journal")))) {
        await rename(from("journal"), to("journal"));
        this.journaled.add(id);
      }
    }
    await this.queueSync.sync();
    await this.deadSync.sync();
    this.pendingIds.add(id);
  }

  /** Deletes the done/ messages received more than `retentionMs` before `now` (sweep.ts); returns how many. */
  sweep(now: Date, retentionMs: number = DEFAULT_RETENTION_MS): Promise<number> {
    return sweepDone(this.paths.done, this.traces, now, retentionMs);
  }

  /** Messages in queue/: committed, processing not finished. */
  depth(): number {
    return this.pendingIds.size;
  }

  /** Closes the files and directories kept open; the queue is not used afterwards. */
  async close(): Promise<void> {
    await Promise.all([this.queueSync, this.deadSync, this.snapshots, this.traces].map((open) => open.close()));
  }
}
