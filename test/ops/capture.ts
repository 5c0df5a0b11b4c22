import { Writable } from "node:stream";

/** A writable that keeps what it is given, and can pretend to be a terminal. */
export class Capture extends Writable {
  readonly chunks: string[] = [];
  isTTY: boolean;

  constructor(tty = false) {
    super();
    this.isTTY = tty;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.chunks.push(chunk.toString("utf8"));
    callback();
  }

  get text(): string {
    return this.chunks.join("");
  }

  /** Every line parsed as JSON; fails the test if one is not exactly one object. */
  records(): Record<string, unknown>[] {
    return this.text
      .split("\n")
      .filter((line) => line !== "")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  }
}
