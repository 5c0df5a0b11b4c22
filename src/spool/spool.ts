/**
 * The durable spool: every message the daemon answered 250 for stays here until its rules have
 * run, and for a retention period after (docs/behaviour.md §4 and §8). Its layout is in layout.ts;
 * acceptors write into it through a SpoolWriter, and the daemon works through its Queue.
 *
 * The daemon opens it in two steps, so that a daemon that cannot start changes nothing: `lock`
 * takes the lock (lock.ts), makes missing directories and lists what a previous run left; once
 * the listeners are bound, `recover` deals with those leftovers (recovery.ts).
 */
import { mkdir } from "node:fs/promises";
import { DirectorySync } from "./dir-sync.js";
import { makeDirectories, spoolPaths } from "./layout.js";
import type { SpoolOptions } from "./layout.js";
import { lockSpool } from "./lock.js";
import type { SpoolLock } from "./lock.js";
import { Queue } from "./queue.js";
import { findLeftovers, recover } from "./recovery.js";
import type { Leftovers } from "./recovery.js";
import { Snapshots } from "./snapshots.js";
import { SpoolWriter } from "./spool-writer.js";


/** A spool this process owns: the daemon's writer and queue over one directory. */
export class Spool {
  private leftovers: Leftovers | null;

  private constructor(
    readonly writer: SpoolWriter,
    readonly queue: Queue,
    private readonly recovery: { leftovers: Leftovers; run: (leftovers: Leftovers) => Promise<void> },
    private readonly lock: SpoolLock,
  ) {
    this.leftovers = recovery.leftovers;
  }

  /**
   * Takes the spool (SpoolLocked if another live process has it) and makes its missing
   * directories. Nothing a previous run left is touched until `recover`; messages may be accepted
   * meanwhile.
   */
  static async lock(options: SpoolOptions): Promise<Spool> {
    await mkdir(options.dir, { recursive: true });
    const lock = await lockSpool(options.dir);
    try {
      const paths = spoolPaths(options.dir);
      const fsync = options.fsync ?? true;
      await makeDirectories(paths, fsync);
      const leftovers = await findLeftovers(paths);
      const queueSync = new DirectorySync(paths.queue, fsync);
      const snapshots = new Snapshots(paths, fsync);
      const queue = new Queue({ paths, fsync, queueSync, snapshots });
      const writer = new SpoolWriter({ paths, fsync, queueSync, snapshots, onStored: (state, head) => queue.stored(state, head) });
      const run = async (found: Leftovers) => queue.recovered(await recover(paths, found, queueSync, fsync));
      return new Spool(writer, queue, { leftovers, run }, lock);
    } catch (error) {
      await lock.release();
      throw error;
    }
  }

  /** `lock` and `recover` in one, for a spool that nothing accepts into before it is in order. */
  static async open(options: SpoolOptions): Promise<Spool> {
    const spool = await Spool.lock(options);
    try {
      await spool.recover();
    } catch (error) {
      await spool.close();
      throw error;
    }
    return spool;
  }

  /**
   * Puts in order what a previous run left (a crash): tmp/ is emptied, accepts cut short are
   * deleted, half-done moves to done/ or dead/ are finished, and the committed messages become
   * pending. Once only.
   */
  async recover(): Promise<void> {
    const leftovers = this.leftovers;
    if (!leftovers) throw new Error("the spool is recovered already");
    this.leftovers = null;
    await this.recovery.run(leftovers);
  }

  /** Closes writer and queue and gives the lock back; the spool is not used afterwards. */
  async close(): Promise<void> {
    try {
      await this.writer.close();
      await this.queue.close();
    } finally {
      await this.lock.release();
    }
  }
}
