import { writeAll } from "./fd.js";

/**
 * Small chunks (SMTP hands over lines or socket reads) are gathered to this size before a write.
 * Each write is a trip to an I/O thread that costs the main thread real CPU time: going from
 * 128 KB to 512 KB took it down by about 15% on 1 MB messages. At 1 MB, receiving waited for
 * writing more often and throughput fell. Only the pages a message fills are ever touched.
 */
const STAGING_BYTES = 512 * 1024;
const STAGING_BUFFERS_KEPT = 64;

/**
 * Staging buffers outlive the message they were taken for: allocating two per message
 * made megabyte-sized mail cost a full garbage collection every few dozen messages (V8 counts
 * such buffers as external memory pressure). Bounded, so a burst does not stay allocated.
 */
const stagingBuffers = {
  free: [] as Buffer[],
  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafe(STAGING_BYTES);
  },
  give(buffer: Buffer): void {
    if (this.free.length < STAGING_BUFFERS_KEPT) this.free.push(buffer);
  },
};

/**
 * Writes the body as it arrives, then `trailer(bodyBytes)` right after it. Chunks are copied into
 * a staging buffer at once, so neither a producer that reuses its buffer nor a trickle of tiny
 * chunks (one write each) does harm. Two staging buffers take turns: one fills while the other
 * is being written, so that reading from the client does not stop for every write. Memory stays
 * at those two buffers whatever the message size, and a small message with its trailer goes out
 * in one write. Returns the body's size.
 */
export async function writeStream(fd: number, body: AsyncIterable<Buffer>, trailer: (bodyBytes: number) => Promise<Buffer>): Promise<number> {
  const writer = new StagedWriter(fd);
  try {
    for await (const chunk of body) await writer.stage(chunk);
    const bodyBytes = writer.bytes;
    await writer.stage(await trailer(bodyBytes));
    await writer.flush();
    return bodyBytes;
  } finally {
    await writer.settle();
  }
}

class StagedWriter {
  /** Bytes staged so far, written or not. */
  bytes = 0;
  private staging: Buffer = stagingBuffers.take();
  private spare: Buffer | null = null;
  private staged = 0;
  private writing: Promise<void> = Promise.resolve();

  constructor(private readonly fd: number) {}

  async stage(chunk: Buffer): Promise<void> {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.staged === STAGING_BYTES) await this.flush();
      const copied = chunk.copy(this.staging, this.staged, offset);
      this.staged += copied;
      this.bytes += copied;
      offset += copied;
    }
  }

  /** Starts writing what is staged, once the write before it has finished. */
  async flush(): Promise<void> {
    // Waiting here also surfaces the previous write's error.
    await this.writing;
    if (this.staged === 0) return;
    const full = this.staging;
    this.writing = writeAll(this.fd, full.subarray(0, this.staged), this.bytes - this.staged);
    // Observed at once; the failure itself reaches the caller through the next flush or settle().
    this.writing.catch(() => undefined);
    this.staged = 0;
    this.staging = this.spare ?? stagingBuffers.take();
    this.spare = full;
  }

  /** Waits for the write in flight, then returns the buffers; rejects if that write failed. */
  async settle(): Promise<void> {
    try {
      await this.writing;
    } finally {
      stagingBuffers.give(this.staging);
      if (this.spare) stagingBuffers.give(this.spare);
      this.spare = null;
    }
  }
}
