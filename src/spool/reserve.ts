import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { DirectorySync } from "./dir-sync.js";
import { closeFd, openFd } from "./fd.js";

/**
 * Files kept created ahead in queue/ for the next messages. Enough for the sessions that reach
 * DATA at about the same time; more would only be refilled more slowly.
 */
const RESERVED_FILES = 16;

/**
 * Message files created, and their directory entries made durable, before a message needs one.
 * Creating the file and fsyncing queue/ at the start of DATA cost a trip to the I/O threads and,
 * on ext4, a journal commit that the fdatasync behind it then waited for: about a tenth of a
 * millisecond of every 250 with one session. A reserved file is empty and has no footer, so a
 * crash leaves nothing that recovery would take for a message: it deletes it with the other
 * accepts cut short.
 */
export class ReservedFiles {
  private readonly ready: { id: string; fd: number }[] = [];
  private readonly claimed = new Map<string, number>();
  private creating = 0;
  private closed = false;
  /** Set by the first claim: until IDs are claimed from here, nothing is reserved. */
  private newId: (() => string) | null = null;
  private readonly pending = new Set<Promise<void>>();

  constructor(
    private readonly queue: string,
    private readonly sync: DirectorySync,
  ) {}

  /** The ID of a reserved file, or a new ID (`newId`) while none is ready. */
  claim(newId: () => string): string {
    this.newId = newId;
    const file = this.ready.shift();
    if (!file) {
      this.refill();
      return newId();
    }
    this.claimed.set(file.id, file.fd);
    return file.id;
  }

  /**
   * Creates files up to the reserve's size. Called once a store has its answer rather than
   * when a file is claimed: the directory fsync would otherwise share the disk's journal with
   * the fdatasync that the claiming message's 250 waits for.
   */
  refill(): void {
    const newId = this.newId;
    // Refilled by halves, so that several creates share one directory fsync (group commit).
    if (!newId || this.ready.length + this.creating > RESERVED_FILES / 2) return;
    while (!this.closed && this.ready.length + this.creating < RESERVED_FILES) this.create(newId);
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

  private create(newId: () => string): void {
    this.creating++;
    const id = newId();
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
      // A disk that fails here fails the store too, which opens its own file and reports why.
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
