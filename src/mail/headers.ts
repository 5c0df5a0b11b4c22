import fs from "node:fs";
import { promisify } from "node:util";
import type { Header } from "../rules/model.js";

export class MessageParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MessageParseError";
  }
}

export interface MessageHead {
  /** Header fields in message order. */
  headers: Header[];
  /** Length of the header block including the empty line that ends it (the body starts here). */
  headerBytes: number;
  /** Size of the whole message in bytes. */
  size: number;
  /** The first `headerBytes` bytes of the message. */
  headerBlock: Buffer;
}

export interface MessageHeadOptions {
  /** Largest header block accepted; a longer one is a MessageParseError. Default 1 MiB. */
  maxHeaderBytes?: number;
}

export const DEFAULT_MAX_HEADER_BYTES = 1024 * 1024;
const READ_CHUNK = 64 * 1024;

const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;
const HT = 0x09;
const COLON = 0x3a;
const LEADING_WSP = /^[ \t]+/;

/**
 * Offset of the ':' ending a valid field name (RFC 5322 ftext, optionally followed by the
 * obsolete WSP before the colon) on the line [start, end), or -1 when the line is no header
 * field: a continuation, an mbox "From " line, body text, garbage.
 */
function fieldColon(buf: Buffer, start: number, end: number): number {
  let i = start;
  for (; i < end; i++) {
    const c = buf[i] as number;
    if (c === COLON || c === SP || c === HT) break;
    if (c < 0x21 || c > 0x7e) return -1;
  }
  if (i === start) return -1;
  while (i < end && (buf[i] === SP || buf[i] === HT)) i++;
  return i < end && buf[i] === COLON ? i : -1;
}

function nameEnd(buf: Buffer, start: number, colon: number): number {
  let end = colon;
  while (end > start && (buf[end - 1] === SP || buf[end - 1] === HT)) end--;
  return end;
}

/**
 * Parses a header block (optionally still followed by its empty line and more). Never throws:
 * lines that are no header field are skipped together with their continuation lines, and an
 * mbox "From " line is such a line.
 */
export function parseHeaderBlock(block: Buffer): Header[] {
  const headers: Header[] = [];
  const len = block.length;
  let name: string | undefined;
  let value = "";
  // Folded pieces are collected and joined once, so a long folded header is not rebuilt per line.
  let pieces: string[] | undefined;
  let pos = 0;

  const flush = (): void => {
    if (name === undefined) return;
    let v = pieces === undefined ? value : value + pieces.join("");
    if (value === "" && pieces !== undefined) v = v.replace(LEADING_WSP, "");
    headers.push({ name, value: v });
    name = undefined;
    pieces = undefined;
  };

  while (pos < len) {
    const lf = block.indexOf(LF, pos);
    const lineEnd = lf === -1 ? len : lf;
    const contentEnd = lineEnd > pos && block[lineEnd - 1] === CR ? lineEnd - 1 : lineEnd;
    if (contentEnd === pos) break;
    const first = block[pos];
    if (first === SP || first === HT) {
      // SES shows a fold (line break and the blanks after it) as one space in `mail.headers`.
      let text = pos + 1;
      while (text < contentEnd && (block[text] === SP || block[text] === HT)) text++;
      if (name !== undefined) (pieces ??= []).push(` ${block.toString("utf8", text, contentEnd)}`);
    } else {
      flush();
      const colon = fieldColon(block, pos, contentEnd);
      if (colon !== -1) {
        name = block.toString("latin1", pos, nameEnd(block, pos, colon));
        let v = colon + 1;
        while (v < contentEnd && (block[v] === SP || block[v] === HT)) v++;
        value = block.toString("utf8", v, contentEnd);
      }
    }
    pos = lineEnd + 1;
  }
  flush();
  return headers;
}

/**
 * Where the header block ends, scanning whole lines from `lineStart` up to `limit`: `end` is the
 * offset just past the empty line, or -1 when none was found, and `lineStart` is then where the
 * last incomplete line starts, so that scanning can resume there once more bytes are in.
 */
export function scanHeaderEnd(buf: Buffer, lineStart: number, limit: number): { end: number; lineStart: number } {
  let start = lineStart;
  while (start < limit) {
    const lf = buf.indexOf(LF, start);
    if (lf === -1 || lf >= limit) break;
    if (lf === start || (lf === start + 1 && buf[start] === CR)) return { end: lf + 1, lineStart: start };
    start = lf + 1;
  }
  return { end: -1, lineStart: start };
}

function lineEndOf(buf: Buffer, start: number): number {
  const lf = buf.indexOf(LF, start);
  const end = lf === -1 ? buf.length : lf;
  return end > start && buf[end - 1] === CR ? end - 1 : end;
}

/** Rejects input that has no header block at all, such as a bare body or a binary file. */
function checkFirstLine(block: Buffer): void {
  let start = 0;
  let lineNumber = 1;
  let end = lineEndOf(block, start);
  if (block.subarray(0, 5).toString("latin1") === "From ") {
    start = block.indexOf(LF) + 1 || block.length;
    lineNumber = 2;
    end = lineEndOf(block, start);
  }
  // An empty first line is the empty header block of a message that has a body only.
  if (end === start) return;
  if (fieldColon(block, start, end) === -1) {
    throw new MessageParseError(`no header block: line ${lineNumber} is not a header field`);
  }
}

function tooLarge(max: number): MessageParseError {
  return new MessageParseError(`header block exceeds ${max} bytes without an empty line ending it`);
}

function headFromBlock(block: Buffer, size: number): MessageHead {
  checkFirstLine(block);
  return { headers: parseHeaderBlock(block), headerBytes: block.length, size, headerBlock: block };
}

/** The head of an in-memory message; `headerBlock` is a view of `bytes`, not a copy. */
export function parseMessageHead(bytes: Buffer, opts?: MessageHeadOptions): MessageHead {
  const max = opts?.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
  if (bytes.length === 0) throw new MessageParseError("empty message");
  const limit = Math.min(bytes.length, max);
  const { end } = scanHeaderEnd(bytes, 0, limit);
  if (end === -1 && bytes.length > max) throw tooLarge(max);
  return headFromBlock(bytes.subarray(0, end === -1 ? bytes.length : end), bytes.length);
}

/**
 * Reads the head of a message file without touching its body: reads stop at the empty line
 * that ends the header block, so the cost depends on the header size, not the message size.
 * A file without an empty line is all header (a message without a body).
 */
export async function readMessageHead(path: string, opts?: MessageHeadOptions): Promise<MessageHead> {
  // The callback API, not FileHandle: replay reads thousands of small heads a second, and
  // FileHandle's bookkeeping costs about as much as the read itself.
  const fd = await openFile(path, "r");
  try {
    const { size } = await fstat(fd);
    return await readMessageHeadAt(fd, size, opts);
  } finally {
    await closeFile(fd);
  }
}

/**
 * A message file's head and, when the file is at most `wholeUpTo` bytes, all of its bytes, in
 * one open (replay makes the stored message of a small file in memory); a larger file gives its
 * head only, read as readMessageHead reads it.
 */
export async function readMessageFile(
  path: string,
  wholeUpTo: number,
  opts?: MessageHeadOptions,
): Promise<{ head: MessageHead; bytes?: Buffer }> {
  const fd = await openFile(path, "r");
  try {
    const { size } = await fstat(fd);
    if (size === 0 || size > wholeUpTo) return { head: await readMessageHeadAt(fd, size, opts) };
    const bytes = Buffer.allocUnsafe(size);
    let filled = 0;
    while (filled < size) {
      const bytesRead = await readInto(fd, bytes, filled, size - filled, filled);
      // The file shrank since fstat: what was read is the whole message.
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    const whole = bytes.subarray(0, filled);
    return { head: parseMessageHead(whole, opts), bytes: whole };
  } finally {
    await closeFile(fd);
  }
}

/**
 * The same for a message stored in the first `size` bytes of an open file (the spool keeps
 * other records after it): nothing at or beyond `size` is read.
 */
export async function readMessageHeadAt(fd: number, size: number, opts?: MessageHeadOptions): Promise<MessageHead> {
  const max = opts?.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
  if (size === 0) throw new MessageParseError("empty message");
  let buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, size, max));
  let filled = 0;
  let lineStart = 0;
  while (filled < size) {
    if (filled === buf.length) {
      if (filled >= max) throw tooLarge(max);
      const grown = Buffer.allocUnsafe(Math.min(buf.length * 2, size, max));
      buf.copy(grown, 0, 0, filled);
      buf = grown;
    }
    const bytesRead = await readInto(fd, buf, filled, buf.length - filled, filled);
    // The file shrank since fstat: what was read is the whole message.
    if (bytesRead === 0) break;
    filled += bytesRead;
    const scan = scanHeaderEnd(buf, lineStart, filled);
    // Copied, so that a small header does not keep the whole read buffer alive.
    if (scan.end !== -1) return headFromBlock(Buffer.from(buf.subarray(0, scan.end)), size);
    lineStart = scan.lineStart;
  }
  if (filled === 0) throw new MessageParseError("empty message");
  return headFromBlock(buf.subarray(0, filled), size);
}

const openFile = promisify(fs.open);
const fstat = promisify(fs.fstat);
const closeFile = promisify(fs.close);
// Looked up on the module object at call time, so that tests can count what is read.
const readInto = (fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> =>
  new Promise((resolve, reject) => {
    fs.read(fd, buf, offset, length, position, (error, bytesRead) => (error ? reject(error) : resolve(bytesRead)));
  });
