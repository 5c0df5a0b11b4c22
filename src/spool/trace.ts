import { join } from "node:path";
import { closeOpened, openFd, writeAll } from "./fd.js";

/**
 * The append-only log of completed messages' traces, one file per UTC day of completion. One
 * file instead of one per message saves an open, a write and a close per message; lines that
 * arrive while a write is under way go out together in the next one.
 */
export class TraceLog {
  private file: { day: string; fd: Promise<number> } | null = null;
  private queued: { day: string; line: string; done: { resolve: () => void; reject: (error: unknown) => void } }[] = [];
  private writing: Promise<void> | null = null;

  constructor(private readonly dir: string) {}

  /** Resolves once `line` is written (not fsync'd) to the log of the day of `at` (ISO 8601). */
  append(at: string, line: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queued.push({ day: at.slice(0, 10), line: `${line}\n`, done: { resolve, reject } });
      this.writing ??= this.drain();
    });
  }

  /** Closes the log of `day` if it is open, before its file is deleted. */
  async forget(day: string): Promise<void> {
    await this.writing;
    if (this.file?.day === day) await this.closeFile();
  }

  async close(): Promise<void> {
    await this.writing;
    await this.closeFile();
  }

  private async drain(): Promise<void> {
    while (this.queued.length > 0) {
      const day = this.queued[0]!.day;
      // One write per day present (a batch spans two only around midnight).
      const batch = this.queued.filter((entry) => entry.day === day);
      this.queued = this.queued.filter((entry) => entry.day !== day);
      try {
        if (this.file?.day !== day) {
          await this.closeFile();
          this.file = { day, fd: openFd(join(this.dir, `traces-${day}.jsonl`), "a") };
        }
        // O_APPEND puts the lines at the end whatever the position says.
        await writeAll(await this.file.fd, Buffer.from(batch.map((entry) => entry.line).join("")), 0);
        for (const entry of batch) entry.done.resolve();
      } catch (error) {
        // The next batch opens the file again.
        await this.closeFile().catch(() => undefined);
        for (const entry of batch) entry.done.reject(error);
      }
    }
    this.writing = null;
  }

  private async closeFile(): Promise<void> {
    const file = this.file;
    this.file = null;
    await closeOpened(file?.fd ?? null);
  }
}
