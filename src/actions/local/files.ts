import { randomUUID } from "node:crypto";
import { mkdir, open, rename, unlink } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { basename, dirname, join, relative, sep } from "node:path";
import type { Readable } from "node:stream";
import { ActionError } from "../backend.js";
import { syncPath } from "../durable.js";

/** mkdir -p, with the new directory entries themselves made durable. */
export async function ensureDir(dir: string): Promise<void> {
  const first = await mkdir(dir, { recursive: true });
  if (first === undefined) return;
  // Each directory created is an entry in its parent: sync first's parent and every created
  // directory above dir; dir itself gets synced by whoever puts something in it.
  let current = dirname(first);
  await syncPath(current);
  const below = relative(current, dir).split(sep);
  for (const part of below.slice(0, -1)) {
    current = join(current, part);
    await syncPath(current);
  }
}

async function writeAll(handle: FileHandle, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, offset, bytes.length - offset);
    offset += bytesWritten;
  }
}

/** Creates path (which must not exist), streams body into it and fsyncs it; returns the byte count. */
export async function writeNewFile(path: string, body: AsyncIterable<Buffer>): Promise<number> {
  const handle = await open(path, "wx");
  try {
    let bytes = 0;
    for await (const chunk of body) {
      await writeAll(handle, chunk);
      bytes += chunk.length;
    }
    await handle.sync();
    return bytes;
  } finally {
    await handle.close();
  }
}

export function checkLength(bytes: number, expected: number, what: string): void {
  // The body is the stored message, which never changes: a mismatch will not mend on retry.
  if (bytes !== expected) {
    throw new ActionError("permanent", `${what}: body had ${bytes} bytes, ${expected} were announced`);
  }
}

/** The name of replaceFile's temp files; a crash between create and rename leaves one behind. */
export const TEMP_FILE_NAME = /^\.receiptd-tmp-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Writes target atomically and durably: a temp file in the same directory, fsync, rename,
 * fsync of the directory. A reader sees the old content or the new, never a partial file.
 */
export async function replaceFile(target: string, body: AsyncIterable<Buffer>, expectedLength: number): Promise<number> {
  const dir = dirname(target);
  await ensureDir(dir);
  const temp = join(dir, `.receiptd-tmp-${randomUUID()}`);
  try {
    const bytes = await writeNewFile(temp, body);
    checkLength(bytes, expectedLength, basename(target));
    await rename(temp, target);
    await syncPath(dir);
    return bytes;
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw error;
  }
}

const PERMANENT_FS_CODES = new Set(["EISDIR", "ENOTDIR", "EEXIST", "ENAMETOOLONG"]);
/** The data directory's permissions or mount: the operator's to fix, so the mail is kept meanwhile. */
const OPERATOR_FS_CODES = new Set(["EACCES", "EPERM", "EROFS"]);

/**
 * Filesystem errors that retrying cannot fix (a key that collides with a directory, a name
 * too long) become permanent; others (ENOSPC, EIO, no permission, read-only) stay transient.
 */
export function classifyFsError(error: unknown, what: string): unknown {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  if (code !== undefined && OPERATOR_FS_CODES.has(code)) {
    // The processor's action-failed warning carries this text (and counts it), once per attempt.
    const hint = "fix the data directory's permissions or mount; the message is kept and retried";
    return new ActionError("transient", `${what}: ${(error as Error).message}: ${hint}`, { cause: error });
  }
  if (code !== undefined && PERMANENT_FS_CODES.has(code)) {
    return new ActionError("permanent", `${what}: ${(error as Error).message}`, { cause: error });
  }
  return error;
}

/**
 * Appends JSON lines. Writes to one file are serialized in-process and each line goes out in
 * one O_APPEND write, so concurrent appends never interleave; a failed write is truncated away
 * so that a retry does not append after half a line.
 */
export class LineAppender {
  private readonly tails = new Map<string, Promise<void>>();
  /** Files whose directory entry this process has already made durable. */
  private readonly durable = new Set<string>();

  append(file: string, record: unknown): Promise<void> {
    const line = Buffer.from(`${JSON.stringify(record)}\n`);
    const written = (this.tails.get(file) ?? Promise.resolve()).then(() => this.write(file, line));
    const tail = written.catch(() => undefined);
    this.tails.set(file, tail);
    void tail.then(() => {
      if (this.tails.get(file) === tail) this.tails.delete(file);
    });
    return written;
  }

  private async write(file: string, line: Buffer): Promise<void> {
    const known = this.durable.has(file);
    if (!known) await ensureDir(dirname(file));
    const handle = await open(file, "a");
    try {
      const { size } = await handle.stat();
      try {
        await writeAll(handle, line);
        await handle.sync();
      } catch (error) {
        await handle.truncate(size).catch(() => undefined);
        throw error;
      }
    } finally {
      await handle.close();
    }
    if (!known) {
      await syncPath(dirname(file));
      this.durable.add(file);
    }
  }
}

/**
 * Lets go of a body that failed before it was read to the end: a file stream holds its
 * descriptor until it is ended or destroyed. A stream's iterator only destroys it once
 * iteration has begun, so streams are destroyed directly.
 */
export async function release(body: AsyncIterable<Buffer>): Promise<void> {
  const stream = body as Partial<Pick<Readable, "destroy">>;
  if (typeof stream.destroy === "function") {
    stream.destroy();
    return;
  }
  try {
    await body[Symbol.asyncIterator]().return?.();
  } catch {
    // Already broken; nothing left to release.
  }
}
