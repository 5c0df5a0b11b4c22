/**
 * The stored file of a message: the message bytes as received, then its MessageState as JSON,
 * then a fixed-size footer line `receiptd-spool/1 <message bytes, 16 digits> <state bytes, 10
 * digits> <CRC-32 of message and state, 8 hex digits>` preceded by a newline. The state goes last
 * because some of it (authentication) is only known once the whole message has streamed through.
 * `head -c <message bytes>` gives the message back.
 */
import { crc32 } from "node:zlib";
import { readMessageHeadAt } from "../mail/headers.js";
import type { MessageHead } from "../mail/headers.js";
import type { Header } from "../rules/model.js";
import type { Verdicts } from "../ses/verdicts.js";
import { closeFd, fdatasync, fstatFd, openFd, readFd, writeAll } from "./fd.js";

/** The small state record written beside each message. */
export interface MessageState {
  /** 40 characters of base32hex (src/mail/message-id.ts). */
  messageId: string;
  /** ISO 8601. */
  receivedAt: string;
  /** Accepted recipients only. */
  envelope: { mailFrom: string; recipients: string[] };
  client: { ip: string; helo: string; reverseDns: string | null; tls: boolean };
  verdicts: Verdicts;
  /** Content hash of the rule-set snapshot (rule set + identities) this message is evaluated against. */
  snapshot: string;
  /**
   * The headers docs/behaviour.md §5 prepends on receipt (Return-Path, Received, Received-SPF,
   * Authentication-Results, ...), top first. They live here rather than in the stored bytes
   * because some are only known once the whole message has been read, and the message is
   * never held in memory to wait for them; every action sees them on top of the message.
   */
  receiptHeaders?: Header[];
}

const FOOTER_MAGIC = "receiptd-spool/1";
/** "\n" + magic + " " + 16 digits + " " + 10 digits + " " + 8 hex digits + "\n". */
const FOOTER_BYTES = 1 + FOOTER_MAGIC.length + 1 + 16 + 1 + 10 + 1 + 8 + 1;
const FOOTER = /^\nreceiptd-spool\/1 (\d{16}) (\d{10}) ([0-9a-f]{8})\n$/;
/** Read size for checking a stored file's checksum. */
const VERIFY_CHUNK_BYTES = 1024 * 1024;

/** The state and footer that follow the message in its stored file; `bodyCrc` is the body's CRC-32. */
export function storedTrailer(bodyBytes: number, bodyCrc: number, state: MessageState): Buffer {
  const json = Buffer.from(JSON.stringify(state));
  const crc = crc32(json, bodyCrc).toString(16).padStart(8, "0");
  const footer = `\n${FOOTER_MAGIC} ${String(bodyBytes).padStart(16, "0")} ${String(json.length).padStart(10, "0")} ${crc}\n`;
  return Buffer.concat([json, Buffer.from(footer, "latin1")]);
}

/** A stored file that is not whole: no footer, or content that does not match it. */
export class StoredFileError extends Error {}

interface Footer {
  bodyBytes: number;
  stateBytes: number;
  /** CRC-32 of the body and the state. */
  crc: number;
}

async function readFooter(fd: number, path: string): Promise<Footer> {
  const { size } = await fstatFd(fd);
  if (size < FOOTER_BYTES) throw new StoredFileError(`${path} is too short to be a stored message (${size} bytes)`);
  const footerBytes = Buffer.allocUnsafe(FOOTER_BYTES);
  await readFd(fd, footerBytes, size - FOOTER_BYTES);
  const footer = FOOTER.exec(footerBytes.toString("latin1"));
  const bodyBytes = Number(footer?.[1]);
  const stateBytes = Number(footer?.[2]);
  if (!footer || bodyBytes + stateBytes + FOOTER_BYTES !== size) {
    throw new StoredFileError(`${path} does not end with a valid "${FOOTER_MAGIC}" footer`);
  }
  return { bodyBytes, stateBytes, crc: Number.parseInt(footer[3] ?? "", 16) };
}

/** Whether a stored file has a footer, and (with `checksum`) whether its content matches it. */
export async function storedFileIsWhole(path: string, { checksum }: { checksum: boolean }): Promise<boolean> {
  const fd = await openFd(path, "r");
  try {
    let footer: Footer;
    try {
      footer = await readFooter(fd, path);
    } catch (error) {
      if (error instanceof StoredFileError) return false;
      throw error;
    }
    if (!checksum) return true;
    const length = footer.bodyBytes + footer.stateBytes;
    const buffer = Buffer.allocUnsafe(Math.min(VERIFY_CHUNK_BYTES, Math.max(1, length)));
    let crc = 0;
    for (let position = 0; position < length; ) {
      const read = await readFd(fd, buffer.subarray(0, Math.min(buffer.length, length - position)), position);
      if (read === 0) return false;
      crc = crc32(buffer.subarray(0, read), crc);
      position += read;
    }
    return crc === footer.crc;
  } finally {
    await closeFd(fd);
  }
}

/**
 * Reads a stored file's state, and its message head unless `withHead` is false, without reading
 * the message body.
 */
export async function readStored(path: string, withHead: true): Promise<{ state: MessageState; head: MessageHead }>;
export async function readStored(path: string, withHead: false): Promise<{ state: MessageState }>;
export async function readStored(path: string, withHead: boolean): Promise<{ state: MessageState; head?: MessageHead }> {
  const fd = await openFd(path, "r");
  try {
    const { bodyBytes, stateBytes } = await readFooter(fd, path);
    const stateText = Buffer.allocUnsafe(stateBytes);
    await readFd(fd, stateText, bodyBytes);
    const state = JSON.parse(stateText.toString("utf8")) as MessageState;
    return withHead ? { state, head: await readMessageHeadAt(fd, bodyBytes) } : { state };
  } finally {
    await closeFd(fd);
  }
}

/** Reads a stored file's message bytes (as stored: without the receipt headers) and its state. */
export async function readStoredWhole(path: string): Promise<{ state: MessageState; body: Buffer }> {
  const fd = await openFd(path, "r");
  try {
    const { bodyBytes, stateBytes } = await readFooter(fd, path);
    const content = Buffer.allocUnsafe(bodyBytes + stateBytes);
    for (let position = 0; position < content.length; ) {
      const read = await readFd(fd, content.subarray(position), position);
      if (read === 0) throw new StoredFileError(`${path} ended before its footer said`);
      position += read;
    }
    return { state: JSON.parse(content.toString("utf8", bodyBytes)) as MessageState, body: content.subarray(0, bodyBytes) };
  } finally {
    await closeFd(fd);
  }
}

/**
 * Writes to `to` the stored file `from` with a new state: the same message bytes, a new state
 * and footer. For a dead letter that is requeued under another rule set snapshot.
 */
export async function writeRestated(from: string, to: string, state: MessageState, { durable }: { durable: boolean }): Promise<void> {
  const source = await openFd(from, "r");
  try {
    const { bodyBytes } = await readFooter(source, from);
    const target = await openFd(to, "w");
    try {
      const buffer = Buffer.allocUnsafe(Math.min(VERIFY_CHUNK_BYTES, Math.max(1, bodyBytes)));
      let crc = 0;
      for (let position = 0; position < bodyBytes; ) {
        const read = await readFd(source, buffer.subarray(0, Math.min(buffer.length, bodyBytes - position)), position);
        if (read === 0) throw new StoredFileError(`${from} ended before its footer said`);
        crc = crc32(buffer.subarray(0, read), crc);
        await writeAll(target, buffer.subarray(0, read), position);
        position += read;
      }
      await writeAll(target, storedTrailer(bodyBytes, crc, state), bodyBytes);
      if (durable) await fdatasync(target);
    } finally {
      await closeFd(target);
    }
  } finally {
    await closeFd(source);
  }
}
