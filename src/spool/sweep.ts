import { readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { readStored } from "./format.js";
import { AREA_FILE, DONE_HOUR, TRACE_LOG } from "./layout.js";
import type { TraceLog } from "./trace.js";
import { DEFAULTS } from "../config/defaults.js";

/** docs/behaviour.md §8: accepted messages are kept for 24 hours unless configured otherwise. */
export const DEFAULT_RETENTION_MS = DEFAULTS.spool.retentionHours * 60 * 60 * 1000;

const HOUR_MS = 60 * 60 * 1000;
const DAY_MS = 24 * HOUR_MS;

/**
 * Deletes the messages in `done` received more than `retentionMs` before `now`; dead/ is kept for
 * operators. Returns how many messages were deleted.
 *
 * Messages are filed by the hour they completed in, which is never before they were received, so
 * an hour whose end is past the retention period holds only expired messages: it goes whole,
 * without a message being read. A message is kept for at most an hour (and its processing time)
 * beyond the retention period. Files are deleted one at a time, so that the sweep holds one of
 * libuv's threads at most, not all of them, while the listener waits on them for its fsyncs.
 */
export async function sweepDone(done: string, traces: TraceLog, now: Date, retentionMs: number): Promise<number> {
  let deleted = 0;
  for (const name of await readdir(done)) {
    const day = TRACE_LOG.exec(name)?.[1];
    // A day's traces go once its last possible entry is older than the retention period.
    if (day !== undefined && now.getTime() - (Date.parse(`${day}T00:00:00Z`) + DAY_MS) > retentionMs) {
      await traces.forget(day);
      await rm(join(done, name), { force: true });
    }
    if (DONE_HOUR.test(name) && now.getTime() - (Date.parse(`${name}:00:00Z`) + HOUR_MS) > retentionMs) {
      deleted += await deleteHour(join(done, name));
    }
    // Spools written before messages were filed by hour have them in done/ itself.
    const id = AREA_FILE.exec(name)?.[1];
    if (id !== undefined && name.endsWith(".msg") && now.getTime() - (await receivedAt(join(done, name))) > retentionMs) {
      await rm(join(done, `${id}.journal`), { force: true });
      await rm(join(done, name), { force: true });
      deleted++;
    }
  }
  return deleted;
}

async function deleteHour(directory: string): Promise<number> {
  let deleted = 0;
  // No directory fsync: a deletion a crash undoes is simply done again by the next sweep.
  for (const name of await readdir(directory)) {
    await rm(join(directory, name), { force: true });
    if (name.endsWith(".msg")) deleted++;
  }
  await rm(directory, { recursive: true, force: true });
  return deleted;
}

async function receivedAt(messagePath: string): Promise<number> {
  try {
    const time = Date.parse((await readStored(messagePath, false)).state.receivedAt);
    if (!Number.isNaN(time)) return time;
  } catch {
    // An unreadable state still ages: by the time it was written, which is when it was received.
  }
  return (await stat(messagePath)).mtimeMs;
}
