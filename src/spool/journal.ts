/**
 * queue/<id>.journal: one JSON line per action outcome recorded done, in execution order, each
 * durable before the next action runs, so that after a kill -9 an action is known done; and,
 * before them, the spam and virus verdicts when the message was scanned (`{"scan": ...}`), so
 * that a message is scanned once and its actions always see the same verdicts.
 */
import { open, readFile } from "node:fs/promises";
import type { ActionOutcome } from "../rules/executor.js";
import type { VerdictStatus } from "../ses/verdicts.js";
import { closeFd, fdatasync, fstatFd, openFd, writeAll } from "./fd.js";
import { isMissing } from "./layout.js";

function isDoneOutcome(value: unknown): value is ActionOutcome {
  return value !== null && typeof value === "object" && (value as { status?: unknown }).status === "done";
}

/** The verdicts a scan gave, as journaled. */
export interface ScanRecord {
  spam: VerdictStatus;
  virus: VerdictStatus;
  /** Each engine's own words, for the trace. */
  detail?: Record<string, string>;
}

function isScanLine(value: unknown): value is { scan: ScanRecord } {
  const scan = value !== null && typeof value === "object" ? (value as { scan?: unknown }).scan : undefined;
  return typeof scan === "object" && scan !== null && typeof (scan as ScanRecord).spam === "string" && typeof (scan as ScanRecord).virus === "string";
}

export interface Journal {
  outcomes: ActionOutcome[];
  scan: ScanRecord | null;
}

/** One line of a journal read by someone else (`receiptd messages`): an outcome, a scan, or neither. */
export function journalLine(value: unknown): { outcome: ActionOutcome } | { scan: ScanRecord } | null {
  if (isDoneOutcome(value)) return { outcome: value };
  if (isScanLine(value)) return { scan: value.scan };
  return null;
}

/**
 * The journal's outcomes up to the first line that is not a complete, valid, done outcome: a
 * crash can tear the last line. The tail from there is cut off, so that the next append does
 * not glue a good line onto the torn one. Null when there is no journal.
 */
export async function readJournal(path: string, fsync: boolean): Promise<Journal | null> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (error) {
    if (isMissing(error)) return null;
    throw error;
  }
  const outcomes: ActionOutcome[] = [];
  let scan: ScanRecord | null = null;
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
    const line = journalLine(outcome);
    if (!line) break;
    if ("scan" in line) scan = line.scan;
    else outcomes.push(line.outcome);
    good = end + 1;
  }
  if (good < bytes.length) {
    const handle = await open(path, "r+");
    try {
      await handle.truncate(good);
      if (fsync) await handle.datasync();
    } finally {
      await handle.close();
    }
  }
  return { outcomes, scan };
}

/**
 * Appends an outcome durably; returns whether the line created the file. `opened` is told once
 * the file exists, whether or not the write then succeeds.
 */
export async function appendOutcome(path: string, outcome: ActionOutcome | { scan: ScanRecord }, fsync: boolean, opened: () => void): Promise<boolean> {
  const fd = await openFd(path, "a");
  try {
    opened();
    const created = (await fstatFd(fd)).size === 0;
    // O_APPEND puts the line at the end whatever the position says.
    await writeAll(fd, Buffer.from(`${JSON.stringify(outcome)}\n`), 0);
    if (fsync) await fdatasync(fd);
    return created;
  } finally {
    await closeFd(fd);
  }
}
