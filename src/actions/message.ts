import { createReadStream } from "node:fs";
import type { MessageHead } from "../mail/headers.js";
import type { Header } from "../rules/model.js";
import type { Verdicts } from "../ses/verdicts.js";

/**
 * The message an action back end works on: the original bytes as they were stored on
 * receipt (before any AddHeader), read afresh for every action so that none holds it whole.
 * What an action sends is `prependedHeaders` (from its ActionCall) followed by these bytes.
 */
export interface ReceivedMessage {
  /** Size of the original bytes. */
  size: number;
  /** Header fields of the original bytes, in message order. */
  headers: readonly Header[];
  /** The original header block as bytes, for the text/rfc822-headers part of a DSN. */
  headerBlock: Buffer;
  /** A new stream of the original bytes, from the first. */
  open(): AsyncIterable<Buffer>;
  /** When the message was accepted: SES's `mail.timestamp`. */
  receivedAt: Date;
  verdicts: Verdicts;
}

export interface Receipt {
  receivedAt: Date;
  verdicts: Verdicts;
}

type Head = Pick<MessageHead, "size" | "headers" | "headerBlock">;

/** A message in the first `head.size` bytes of a file (the spool stores more after it). */
export function fileMessage(path: string, head: Head, receipt: Receipt): ReceivedMessage {
  return {
    size: head.size,
    headers: head.headers,
    headerBlock: head.headerBlock,
    open: () => readPrefix(path, head.size),
    ...receipt,
  };
}

/**
 * The file is opened on the first read and closed when reading ends, however it ends: a stream
 * opened at once kept its descriptor when an action failed before reading (one leaked per
 * failure, and per retry).
 */
async function* readPrefix(path: string, size: number): AsyncGenerator<Buffer> {
  // `end` is inclusive; a head always has at least one byte.
  for await (const chunk of createReadStream(path, { start: 0, end: size - 1 })) yield chunk as Buffer;
}

export function bufferMessage(bytes: Buffer, head: Head, receipt: Receipt): ReceivedMessage {
  return {
    size: bytes.length,
    headers: head.headers,
    headerBlock: head.headerBlock,
    open: async function* () {
      yield bytes;
    },
    ...receipt,
  };
}
