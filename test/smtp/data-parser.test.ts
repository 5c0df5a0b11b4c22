import { SMTPStream } from "smtp-server/lib/smtp-stream.js";
import { describe, expect, it } from "vitest";
import {
  FEED_DATA_STREAM_FINGERPRINT,
  SmtpServerPatchError,
  patchDataParser,
  sourceFingerprint,
} from "../../src/smtp/patches.js";

/**
 * The DATA parser patch must be the library's method made faster, nothing else: the same content
 * bytes, the same end of DATA, the same commands after it, the same byte counts, for any way the
 * input is cut into chunks. Both run side by side, as subclasses, on the same inputs.
 */
class LibraryParser extends SMTPStream {}
class PatchedParser extends SMTPStream {}

interface Transcript {
  /** Set when a write is never completed: the library stalls on some odd pipelining, and so must the port. */
  stalledAt?: number;
  commands: string[];
  messages: { content: string; byteLength: number; sizeExceeded: boolean }[];
}

async function run(Parser: typeof SMTPStream, chunks: Buffer[], maxBytes: number): Promise<Transcript> {
  const parser = new Parser();
  const transcript: Transcript = { commands: [], messages: [] };
  parser.oncommand = (command: Buffer, callback?: () => void) => {
    const line = command.toString("latin1");
    transcript.commands.push(line);
    if (line === "DATA") {
      const stream = parser.startDataMode(maxBytes);
      const parts: Buffer[] = [];
      stream.on("data", (part: Buffer) => parts.push(part));
      stream.on("end", () => {
        const info = stream as unknown as { byteLength: number; sizeExceeded: boolean };
        transcript.messages.push({
          content: Buffer.concat(parts).toString("latin1"),
          byteLength: info.byteLength,
          sizeExceeded: info.sizeExceeded,
        });
        parser.continue();
      });
    }
    callback?.();
  };
  for (const [index, chunk] of chunks.entries()) {
    const written = new Promise<boolean>((resolve, reject) => parser.write(chunk, (error) => (error ? reject(error) : resolve(true))));
    if (!(await Promise.race([written, idle()]))) {
      transcript.stalledAt = index;
      return transcript;
    }
  }
  await new Promise<void>((resolve) => parser.end(resolve));
  return transcript;
}

/** Resolves false once the event loop has gone round many times with nothing left to do. */
async function idle(): Promise<false> {
  for (let turn = 0; turn < 20; turn++) await new Promise((resolve) => setImmediate(resolve));
  return false;
}

/** A small deterministic generator, so that a failure names a case that can be run again. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Pieces that make the parser's decisions: line starts, dots, stuffed dots, terminators, bare CR and LF. */
const PIECES = ["\r\n", "\n", "\r", ".", "..", "\r\n.", "\r\n..", "\r\n.\r\n", ".\r\n", "\n.\n", "x", "hello world", "X".repeat(90)];

function session(next: () => number): string {
  const pick = (): string => PIECES[Math.floor(next() * PIECES.length)]!;
  let text = "";
  const messages = 1 + Math.floor(next() * 3);
  for (let m = 0; m < messages; m++) {
    text += "DATA\r\n";
    const pieces = Math.floor(next() * 40);
    for (let p = 0; p < pieces; p++) text += pick();
    text += "\r\n.\r\nNOOP\r\n";
  }
  return text;
}

function cut(bytes: Buffer, next: () => number): Buffer[] {
  const chunks: Buffer[] = [];
  for (let at = 0; at < bytes.length; ) {
    const size = next() < 0.2 ? 1 + Math.floor(next() * 3) : 1 + Math.floor(next() * 64);
    chunks.push(bytes.subarray(at, at + size));
    at += size;
  }
  return chunks;
}

describe("the DATA parser patch", () => {
  it("ports the method this smtp-server version has", () => {
    expect(sourceFingerprint(SMTPStream.prototype._feedDataStream)).toBe(FEED_DATA_STREAM_FINGERPRINT);
  });

  it("refuses to replace a method that has changed", () => {
    const changed = { _feedDataStream: (_chunk: Buffer, done: () => void) => done(), startDataMode: SMTPStream.prototype.startDataMode };
    expect(() => patchDataParser(changed)).toThrow(SmtpServerPatchError);
  });

  it("refuses when DATA is no longer told by the field the input deadlines read", () => {
    const moved = { _feedDataStream: SMTPStream.prototype._feedDataStream, startDataMode: () => undefined };
    expect(() => patchDataParser(moved)).toThrow(/startDataMode does not contain/);
  });

  it("does exactly what smtp-server's own does, for 3,000 random sessions cut into random chunks", async () => {
    patchDataParser(PatchedParser.prototype);
    expect(PatchedParser.prototype._feedDataStream).not.toBe(LibraryParser.prototype._feedDataStream);
    for (let seed = 1; seed <= 3000; seed++) {
      const next = random(seed);
      const bytes = Buffer.from(session(next), "latin1");
      const chunks = cut(bytes, next);
      const maxBytes = next() < 0.3 ? 1 + Math.floor(next() * 200) : 0;
      const expected = await run(LibraryParser, chunks, maxBytes);
      const actual = await run(PatchedParser, chunks, maxBytes);
      expect(actual, `seed ${seed}`).toEqual(expected);
    }
  });

  it("does the same with a large message arriving in socket-sized chunks", async () => {
    patchDataParser(PatchedParser.prototype);
    const line = "1" + "X".repeat(77) + "\r\n";
    const body = line.repeat(13_000) + "..stuffed\r\n" + line.repeat(100) + ".\r\n" + line;
    const bytes = Buffer.from(`DATA\r\n${body}\r\n.\r\nQUIT\r\n`, "latin1");
    const chunks: Buffer[] = [];
    for (let at = 0; at < bytes.length; at += 65_536) chunks.push(bytes.subarray(at, at + 65_536));
    const expected = await run(LibraryParser, chunks, 0);
    expect(expected.messages[0]!.content.length).toBeGreaterThan(1_000_000);
    expect(await run(PatchedParser, chunks, 0)).toEqual(expected);
  });
});
