/**
 * The descriptor calls the spool makes, and its fsyncs. The callback API behind promises rather
 * than FileHandle: every accepted message takes these calls on the way to its 250, and
 * FileHandle's bookkeeping costs as much main-thread time again.
 */
import fs from "node:fs";
import { promisify } from "node:util";

export const openFd = promisify(fs.open);
export const fstatFd = promisify(fs.fstat);
export const closeFd = promisify(fs.close);
// Looked up on the module object at call time, so that tests can count the syncs and reads.
export const fdatasync = (fd: number): Promise<void> =>
  new Promise((resolve, reject) => fs.fdatasync(fd, (error) => (error ? reject(error) : resolve())));
export const fsyncFd = (fd: number): Promise<void> =>
  new Promise((resolve, reject) => fs.fsync(fd, (error) => (error ? reject(error) : resolve())));
const writeFd = (fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<{ bytesWritten: number }> =>
  new Promise((resolve, reject) =>
    fs.write(fd, buf, offset, length, position, (error, bytesWritten) => (error ? reject(error) : resolve({ bytesWritten }))),
  );
export const readFd = (fd: number, buf: Buffer, position: number): Promise<number> =>
  new Promise((resolve, reject) => fs.read(fd, buf, 0, buf.length, position, (error, bytesRead) => (error ? reject(error) : resolve(bytesRead))));

/** Closes a descriptor kept as the promise of its open(), if that open succeeded. */
export async function closeOpened(opening: Promise<number> | null): Promise<void> {
  const fd = await opening?.catch(() => null);
  if (fd !== undefined && fd !== null) await closeFd(fd);
}

export async function writeAll(fd: number, bytes: Buffer, position: number): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) {
    const { bytesWritten } = await writeFd(fd, bytes, offset, bytes.length - offset, position + offset);
    offset += bytesWritten;
  }
}

/** Creates or replaces (a move repeated after a crash finds its trace there already) `path`. */
export async function writeSmallFile(path: string, text: string, { durable }: { durable: boolean }): Promise<void> {
  const fd = await openFd(path, "w");
  try {
    await writeAll(fd, Buffer.from(text), 0);
    if (durable) await fdatasync(fd);
  } finally {
    await closeFd(fd);
  }
}
