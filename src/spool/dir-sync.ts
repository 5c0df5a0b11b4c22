import { closeOpened, fsyncFd, openFd } from "./fd.js";

/**
 * Group commit of one directory's fsync (leader/follower): a caller whose rename finished while
 * an fsync is in flight cannot rely on that fsync, which may have started before the rename, so
 * it waits for the next one; every caller arriving meanwhile shares that next one. Twenty
 * sessions finishing together cost two directory fsyncs, not twenty. The directory stays open
 * between fsyncs: opening it each time would cost two more calls on the way to every 250.
 */
export class DirectorySync {
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
