/**
 * Putting the spool in order after a crash (the commit points are in spool-writer.ts and
 * queue.ts): tmp/ is emptied, accepts cut short are deleted, and half-done moves to done/ or
 * dead/ are finished. The files are listed before the daemon's listeners are bound and dealt with
 * after, so that a daemon that cannot start has changed nothing, and the files of messages the
 * new listeners are already accepting are never among them.
 */
import { readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { syncPath } from "../actions/durable.js";
import type { DirectorySync } from "./dir-sync.js";
import { storedFileIsWhole } from "./format.js";
import { DONE_HOUR, QUEUE_FILE, exists } from "./layout.js";
import type { SpoolPaths } from "./layout.js";

/** What a previous run left in tmp/ and queue/. */
export interface Leftovers {
  tmp: string[];
  queue: string[];
}

/** The committed messages recovery found in queue/. */
export interface Recovered {
  /** Their checksums are not checked yet: see Queue.read. */
  pending: string[];
  /** Those with a queue/<id>.journal. */
  journaled: string[];
}

export async function findLeftovers(paths: SpoolPaths): Promise<Leftovers> {
  return { tmp: await readdir(paths.tmp), queue: await readdir(paths.queue) };
}

export async function recover(paths: SpoolPaths, leftovers: Leftovers, queueSync: DirectorySync, fsync: boolean): Promise<Recovered> {
  for (const name of leftovers.tmp) await rm(join(paths.tmp, name), { recursive: true, force: true });
  return recoverQueue(paths, leftovers.queue, queueSync, fsync);
}

async function recoverQueue(paths: SpoolPaths, names: string[], queueSync: DirectorySync, fsync: boolean): Promise<Recovered> {
  const { queue, dead } = paths;
  const recovered: Recovered = { pending: [], journaled: [] };
  const files = new Map<string, Set<string>>();
  for (const name of names) {
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
    areaDirectories ??= await finishedDirectories(paths);
    for (const directory of areaDirectories) if (await exists(join(directory, `${id}.${kind}`))) return directory;
    return null;
  };
  for (const [id, kinds] of files) {
    if (!kinds.has("msg")) {
      // A journal whose message is gone: its move out of queue/ finished, and a crash undid the
      // journal's part of it (the moves are not fsync'd, so a crash may keep one rename and undo
      // another); with no message anywhere it is an orphan.
      const directory = await holding(id, "msg");
      if (directory) await move(id, "journal", queue, directory);
      else await rm(join(queue, `${id}.journal`), { force: true });
      touched.add(queue);
      continue;
    }
    if (await exists(join(dead, `${id}.trace.json`))) {
      for (const kind of ["msg", "journal"]) if (kinds.has(kind)) await move(id, kind, queue, dead);
      touched.add(queue);
      continue;
    }
    if (!kinds.has("journal") && !(await storedFileIsWhole(join(queue, `${id}.msg`), { checksum: false }))) {
      // Cut off before its footer: its store never committed, so it was never answered 250.
      await rm(join(queue, `${id}.msg`), { force: true });
      touched.add(queue);
      continue;
    }
    if (!kinds.has("journal")) {
      // The journal moved ahead of its message, and a crash undid the trace that went before both.
      const ahead = await holding(id, "journal");
      if (ahead) {
        await move(id, "journal", ahead, queue);
        kinds.add("journal");
      }
    }
    recovered.pending.push(id);
    if (kinds.has("journal")) recovered.journaled.push(id);
  }
  for (const directory of touched) {
    if (directory === queue) await queueSync.sync();
    else if (fsync) await syncPath(directory);
  }
  return recovered;
}

/**
 * Where finished messages are: dead/, each done/<hour>/, and done/ itself, which held them
 * before they were filed by hour.
 */
async function finishedDirectories(paths: SpoolPaths): Promise<string[]> {
  const hours = (await readdir(paths.done)).filter((name) => DONE_HOUR.test(name));
  return [paths.dead, ...hours.map((hour) => join(paths.done, hour)), paths.done];
}
