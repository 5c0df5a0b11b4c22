/**
 * One process owns a spool at a time: `<spool>/lock` holds the owner's PID. It is linked into
 * place from `lock.<pid>`, a file already holding the PID, so that it is never seen empty. A lock
 * naming a process that is gone (a crash) is taken over. This process's own PID counts as gone
 * too: a spool opened again in-process after a simulated crash, or a PID reused since a real one.
 */
import { link, readFile, rm, writeFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { join } from "node:path";
import { isMissing } from "./layout.js";

/** Thrown when another live process owns the spool. */
export class SpoolLocked extends Error {
  constructor(
    readonly dir: string,
    readonly owner: number,
  ) {
    super(`spool ${dir} is in use by process ${owner} (is another receiptd serve running on it?)`);
  }
}

export interface SpoolLock {
  /** Gives the spool up, if this process still owns it. */
  release(): Promise<void>;
}

/** How long to wait for another process's takeover of a stale lock to finish before looking again. */
const TAKEOVER_WAIT_MS = 5;

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists, under another user.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function ownerOf(path: string): Promise<number | null> {
  try {
    const pid = Number.parseInt(await readFile(path, "utf8"), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch (error) {
    if (isMissing(error)) return null;
    throw error;
  }
}

/** Whether `owner` holds the file it was read from for a live process other than this one. */
function isLive(owner: number | null): owner is number {
  return owner !== null && owner !== process.pid && isAlive(owner);
}

/** Links `from` to `to` unless `to` exists; false if it does. */
async function linkNew(from: string, to: string): Promise<boolean> {
  try {
    await link(from, to);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  }
}

/** Makes this process the owner of the spool in `dir`, or throws SpoolLocked. */
export async function lockSpool(dir: string): Promise<SpoolLock> {
  const path = join(dir, "lock");
  const mine = join(dir, `lock.${process.pid}`);
  await writeFile(mine, `${process.pid}\n`);
  try {
    for (;;) {
      if (await linkNew(mine, path)) {
        let released: Promise<void> | null = null;
        return { release: () => (released ??= unlock(path)) };
      }
      const owner = await ownerOf(path);
      if (isLive(owner)) throw new SpoolLocked(dir, owner);
      await removeStale(dir, path, mine);
    }
  } finally {
    await rm(mine, { force: true });
  }
}

/**
 * Removes a lock whose owner is gone. Processes starting together may all find the same stale
 * lock: were each to remove what it found and link its own, a late one would remove the lock an
 * early one had just linked, and both would own the spool. So only the holder of
 * `lock.takeover` (linked like the lock) removes a lock, and only after reading it again; the
 * others wait, then all race to link theirs, which exactly one wins. A takeover cut short by a
 * crash leaves `lock.takeover` naming a dead process, removed the same way as a stale lock (the
 * one race left: two processes clearing that leftover at the same instant).
 */
async function removeStale(dir: string, path: string, mine: string): Promise<void> {
  const takeover = join(dir, "lock.takeover");
  if (!(await linkNew(mine, takeover))) {
    if (isLive(await ownerOf(takeover))) await sleep(TAKEOVER_WAIT_MS);
    else await rm(takeover, { force: true });
    return;
  }
  try {
    // Read again: another process may have taken the lock over since it was found stale.
    if (!isLive(await ownerOf(path))) await rm(path, { force: true });
  } finally {
    await rm(takeover, { force: true });
  }
}

async function unlock(path: string): Promise<void> {
  // Only while it is still ours: a spool reopened in this process may hold it now.
  if ((await ownerOf(path)) === process.pid) await rm(path, { force: true });
}
