/**
 * Reads the spool of a running daemon for `receiptd messages` without disturbing it: the lock is
 * never taken and nothing is written (not even the journal's torn tail, which journal.ts cuts).
 * The daemon moves files while this reads, so a message that vanishes between the listing and the
 * read is looked up again once, where it has gone (queue/ -> done/ or dead/); a queued file that
 * is not whole is a message still being accepted, and is not one yet.
 */
import { readFile, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { prependedHeaderBytes } from "../mail/edit.js";
import type { MessageHead } from "../mail/headers.js";
import type { EvaluationTrace } from "../rules/evaluate.js";
import type { ActionOutcome } from "../rules/executor.js";
import type { RuleSet } from "../rules/model.js";
import { StoredFileError, readStored, readStoredWhole } from "./format.js";
import { journalLine } from "./journal.js";
import type { ScanRecord } from "./journal.js";
import type { MessageState } from "./format.js";
import { AREA_FILE, DONE_HOUR, QUEUE_FILE, TRACE_LOG, checkHash, checkId, isMissing, spoolPaths } from "./layout.js";
import type { SpoolPaths } from "./layout.js";

export type MessageArea = "queued" | "done" | "dead";

export interface SpooledMessage {
  state: MessageState;
  area: MessageArea;
  /** The stored file (format.ts). */
  path: string;
  /** The outcomes journaled done so far, in execution order. */
  journal: ActionOutcome[];
  /** The verdicts of its scan, once journaled. */
  scan: ScanRecord | null;
  /** How evaluation went; null while queued, or for a dead letter that was never evaluated. */
  trace: EvaluationTrace | null;
  /** When it moved to done/ or dead/. */
  finishedAt: string | null;
  /** Why it was dead-lettered. */
  deadReason: string | null;
  /** Why a dead letter's failure DSN was not sent (null sender, sending paused ...); null when it was sent. */
  dsnNotSent: string | null;
}

interface Located {
  id: string;
  area: MessageArea;
  path: string;
}

interface Finished {
  at: string;
  trace: EvaluationTrace | null;
  reason?: string;
  dsnNotSent?: string;
}

async function listNames(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (error) {
    if (isMissing(error)) return [];
    throw error;
  }
}

async function readOptional(path: string): Promise<Buffer | null> {
  try {
    return await readFile(path);
  } catch (error) {
    if (isMissing(error)) return null;
    throw error;
  }
}

/** The journal's complete lines; a torn last line (an append under way) is left out, not cut. */
function parseJournal(bytes: Buffer | null): { outcomes: ActionOutcome[]; scan: ScanRecord | null } {
  const outcomes: ActionOutcome[] = [];
  let scan: ScanRecord | null = null;
  if (!bytes) return { outcomes, scan };
  for (let start = 0; start < bytes.length; ) {
    const end = bytes.indexOf(0x0a, start);
    if (end === -1) break;
    let line;
    try {
      line = journalLine(JSON.parse(bytes.toString("utf8", start, end)));
    } catch {
      break;
    }
    if (!line) break;
    if ("scan" in line) scan = line.scan;
    else outcomes.push(line.outcome);
    start = end + 1;
  }
  return { outcomes, scan };
}

/** A read-only view of one spool directory. */
export class SpoolInspector {
  private readonly paths: SpoolPaths;
  /** done/traces-*.jsonl, read once per inspector: message ID -> its last completion. */
  private doneTraces: Map<string, Finished> | null = null;

  constructor(dir: string) {
    this.paths = spoolPaths(dir);
  }

  /** Every message in the spool, newest received first. */
  async list(): Promise<SpooledMessage[]> {
    const located: Located[] = [];
    for (const name of await listNames(this.paths.queue)) {
      const match = QUEUE_FILE.exec(name);
      if (match?.[2] === "msg") located.push({ id: match[1]!, area: "queued", path: join(this.paths.queue, name) });
    }
    for (const hour of (await listNames(this.paths.done)).filter((name) => DONE_HOUR.test(name))) {
      for (const name of await listNames(join(this.paths.done, hour))) {
        const match = AREA_FILE.exec(name);
        if (match?.[2] === "msg") located.push({ id: match[1]!, area: "done", path: join(this.paths.done, hour, name) });
      }
    }
    for (const name of await listNames(this.paths.dead)) {
      const match = AREA_FILE.exec(name);
      if (match?.[2] === "msg") located.push({ id: match[1]!, area: "dead", path: join(this.paths.dead, name) });
    }
    const messages = new Map<string, SpooledMessage>();
    for (const place of located) {
      if (messages.has(place.id)) continue;
      const message = await this.readOrFind(place);
      if (message) messages.set(place.id, message);
    }
    return [...messages.values()].sort((a, b) => b.state.receivedAt.localeCompare(a.state.receivedAt));
  }

  /** The message with this ID wherever it is now, or null. */
  async find(id: string): Promise<SpooledMessage | null> {
    checkId(id);
    for (let lookup = 1; lookup <= 2; lookup++) {
      const place = await this.locate(id);
      if (!place) return null;
      const message = await this.read(place);
      if (message !== "moved") return message;
    }
    return null;
  }

  /** The message as actions see it: the receipt headers, then the bytes as stored (docs/behaviour.md §5). */
  async export(id: string): Promise<Buffer | null> {
    for (let lookup = 1; lookup <= 2; lookup++) {
      const place = await this.locate(id);
      if (!place) return null;
      try {
        const { state, body } = await readStoredWhole(place.path);
        return Buffer.concat([prependedHeaderBytes(state.receiptHeaders ?? []), body]);
      } catch (error) {
        if (error instanceof StoredFileError && place.area === "queued") return null;
        if (!isMissing(error)) throw error;
      }
    }
    return null;
  }

  /** The message with this ID and its stored header block (without receipt headers), or null. */
  async findWithHead(id: string): Promise<{ message: SpooledMessage; head: MessageHead } | null> {
    for (let lookup = 1; lookup <= 2; lookup++) {
      const message = await this.find(id);
      if (!message) return null;
      try {
        return { message, head: (await readStored(message.path, true)).head };
      } catch (error) {
        if (!isMissing(error)) throw error;
      }
    }
    return null;
  }

  /** The rule set of a snapshot, as stored (SES JSON), or null when it is gone. */
  async snapshotRuleSet(hash: string): Promise<Pick<RuleSet, "name"> | null> {
    checkHash(hash);
    const bytes = await readOptional(join(this.paths.snapshots, `${hash}.json`));
    if (!bytes) return null;
    const snapshot = JSON.parse(bytes.toString("utf8")) as { ruleSet?: { Metadata?: { Name?: string } } };
    return { name: snapshot.ruleSet?.Metadata?.Name ?? "" };
  }

  private async readOrFind(place: Located): Promise<SpooledMessage | null> {
    const message = await this.read(place);
    return message === "moved" ? this.find(place.id) : message;
  }

  /** Queue first: a message only moves out of it, so one that leaves while this looks is found further on. */
  private async locate(id: string): Promise<Located | null> {
    const queued = join(this.paths.queue, `${id}.msg`);
    // Empty files in queue/ are made ahead for messages not yet received.
    if ((await stat(queued).catch(() => null))?.size) return { id, area: "queued", path: queued };
    const hours = (await listNames(this.paths.done)).filter((name) => DONE_HOUR.test(name)).sort().reverse();
    for (const hour of hours) {
      const names = await listNames(join(this.paths.done, hour));
      if (names.includes(`${id}.msg`)) return { id, area: "done", path: join(this.paths.done, hour, `${id}.msg`) };
    }
    if ((await listNames(this.paths.dead)).includes(`${id}.msg`)) return { id, area: "dead", path: join(this.paths.dead, `${id}.msg`) };
    return null;
  }

  /** "moved" when the file went away under the read; null when it is not a whole message (yet). */
  private async read(place: Located): Promise<SpooledMessage | "moved" | null> {
    let state: MessageState;
    try {
      ({ state } = await readStored(place.path, false));
    } catch (error) {
      if (isMissing(error)) return "moved";
      if (error instanceof StoredFileError && place.area === "queued") return null;
      throw error;
    }
    const base = place.path.slice(0, -".msg".length);
    const { outcomes: journal, scan } = parseJournal(await readOptional(`${base}.journal`));
    let finished: Finished | null = null;
    if (place.area === "done") {
      finished = (await this.traces()).get(place.id) ?? null;
      // Completed after the traces were read: read them again.
      if (!finished) {
        this.doneTraces = null;
        finished = (await this.traces()).get(place.id) ?? null;
      }
    }
    if (place.area === "dead") {
      const bytes = await readOptional(`${base}.trace.json`);
      finished = bytes && (JSON.parse(bytes.toString("utf8")) as Finished);
    }
    return {
      state,
      area: place.area,
      path: place.path,
      journal,
      scan,
      trace: finished?.trace ?? null,
      finishedAt: finished?.at ?? null,
      deadReason: finished?.reason ?? null,
      dsnNotSent: finished?.dsnNotSent ?? null,
    };
  }

  private async traces(): Promise<Map<string, Finished>> {
    if (this.doneTraces) return this.doneTraces;
    const traces = new Map<string, Finished>();
    for (const name of (await listNames(this.paths.done)).filter((entry) => TRACE_LOG.test(entry)).sort()) {
      const bytes = await readOptional(join(this.paths.done, name));
      // The last line may be under way; a message's trace may appear twice after a crash (queue.ts).
      for (const line of bytes?.toString("utf8").split("\n") ?? []) {
        try {
          const record = JSON.parse(line) as Finished & { messageId: string };
          traces.set(record.messageId, { at: record.at, trace: record.trace });
        } catch {
          continue;
        }
      }
    }
    this.doneTraces = traces;
    return traces;
  }
}
