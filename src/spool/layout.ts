/**
 * Where the spool keeps what (docs/behaviour.md §4 and §8). Layout under `dir`:
 *
 *   lock                    the PID of the process that owns the spool (lock.ts)
 *   tmp/                    files being written. Whatever is here when the daemon starts is a
 *                           crash leftover and is deleted (recovery.ts).
 *     <id>.trace.json         a move to dead/ in progress
 *     snapshot-<hash>.json    a snapshot in progress
 *   queue/                  messages being accepted, and committed messages whose processing has
 *                           not finished
 *     <id>.msg                the message (format.ts)
 *     <id>.journal            one JSON line per action outcome recorded done, in execution order
 *   done/                   messages whose evaluation completed or stopped; swept after retention
 *     <UTC hour>/             e.g. 2026-12-01T16: the messages completed in that hour, so that
 *       <id>.msg <id>.journal   the sweep deletes whole expired hours without reading a message
 *     traces-<UTC day>.jsonl  one line ({ messageId, at, trace }) per message completed that day
 *   dead/                   messages whose processing was abandoned; kept until an operator acts
 *     <id>.msg <id>.journal <id>.trace.json   ({ at, reason, trace })
 *   snapshots/<sha256>.json the rule set (SES JSON) and identities messages are evaluated against
 *
 * The message ID (validated before it is used in a path) names every file of a message, so one
 * readdir tells what state each message is in.
 *
 * To retry a dead message, an operator moves its .msg and (to skip the actions already done)
 * .journal back into queue/ and deletes its .trace.json, which recovery would otherwise take for
 * an interrupted move and follow back to dead/.
 */
import { mkdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { isMessageId } from "../mail/message-id.js";
import { syncPath } from "../actions/durable.js";

export interface SpoolOptions {
  dir: string;
  /** Default true; tests of logic may turn it off, never production. */
  fsync?: boolean;
}

export interface SpoolPaths {
  dir: string;
  tmp: string;
  queue: string;
  done: string;
  dead: string;
  snapshots: string;
}

export type Area = "done" | "dead";

export const QUEUE_FILE = /^([0-9a-v]{40})\.(msg|journal)$/;
export const AREA_FILE = /^([0-9a-v]{40})\.(msg|journal|trace\.json)$/;
/** done/traces-<UTC day>.jsonl: the traces of the messages completed that day. */
export const TRACE_LOG = /^traces-(\d{4}-\d{2}-\d{2})\.jsonl$/;
/** done/<UTC hour>/: the messages completed in that hour. */
export const DONE_HOUR = /^\d{4}-\d{2}-\d{2}T\d{2}$/;
const SNAPSHOT_HASH = /^[0-9a-f]{64}$/;

export function spoolPaths(dir: string): SpoolPaths {
  return {
    dir,
    tmp: join(dir, "tmp"),
    queue: join(dir, "queue"),
    done: join(dir, "done"),
    dead: join(dir, "dead"),
    snapshots: join(dir, "snapshots"),
  };
}

/** Creates the spool's directories that are missing, durably; an existing spool is left as it is. */
export async function makeDirectories(paths: SpoolPaths, fsync: boolean): Promise<void> {
  for (const directory of [paths.tmp, paths.queue, paths.done, paths.dead, paths.snapshots]) await mkdir(directory, { recursive: true });
  if (fsync) {
    // The subdirectories' own entries, in case they were just created.
    await syncPath(paths.dir);
    await syncPath(join(paths.dir, ".."));
  }
}

export function checkId(id: string): void {
  if (!isMessageId(id)) throw new TypeError(`not a message ID: ${JSON.stringify(id)}`);
}

export function checkHash(hash: string): void {
  if (!SNAPSHOT_HASH.test(hash)) throw new TypeError(`not a snapshot hash: ${JSON.stringify(hash)}`);
}

export function isMissing(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | null)?.code === "ENOENT";
}

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if (isMissing(error)) return false;
    throw error;
  }
}
