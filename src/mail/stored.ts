import type { Envelope, Header } from "../rules/model.js";
import { traceHeaders } from "../smtp/received.js";
import type { AuthResult } from "./auth.js";

/** What is known of one receipt, beside the envelope and the bytes. */
export interface ReceiptFacts {
  messageId: string;
  receivedAt: Date;
  client: { ip: string; helo: string; reverseDns: string | null };
  /** Our host name, for `Received: ... by <hostname>`. */
  hostname: string;
  /** The scan verdict of the matched rules; DISABLED when none scans, and then no X-SES headers. */
  scan: "GRAY" | "DISABLED";
  /**
   * Authentication's headers (Received-SPF, Authentication-Results), none when it is off. A
   * promise while it still reads the message alongside the spool.
   */
  auth: Pick<AuthResult, "headers"> | Promise<Pick<AuthResult, "headers">>;
}

/** The receipt headers with a scan's verdicts in X-SES-Spam-Verdict and X-SES-Virus-Verdict. */
export function withScanVerdicts(headers: readonly Header[], scan: { spam: string; virus: string }): Header[] {
  return headers.map((header) => {
    const name = header.name.toLowerCase();
    if (name === "x-ses-spam-verdict") return { ...header, value: scan.spam };
    if (name === "x-ses-virus-verdict") return { ...header, value: scan.virus };
    return header;
  });
}

export interface StoredMessage<Body> {
  /** The headers on top, SES's order; they live in the spool state, not in `body`. */
  headers: Promise<Header[]>;
  /** The message's own bytes as stored: CRLF line ends, its own Return-Path fields removed. */
  body: Body;
}

/**
 * The message as receiptd stores it and every action sees it (docs/behaviour.md §5), made
 * here for the daemon's acceptance, replay and the testing library alike, so that a Lambda
 * tested against replayed events sees what the daemon would give it. The headers on top are,
 * top first, Return-Path, Received, X-SES-Spam-Verdict, X-SES-Virus-Verdict, Received-SPF and
 * Authentication-Results; the body streams through when it is a stream.
 */
export function storedMessage(envelope: Envelope, raw: Buffer, receipt: ReceiptFacts): StoredMessage<Buffer>;
export function storedMessage(
  envelope: Envelope,
  raw: AsyncIterable<Buffer>,
  receipt: ReceiptFacts,
): StoredMessage<AsyncIterable<Buffer>>;
export function storedMessage(
  envelope: Envelope,
  raw: Buffer | AsyncIterable<Buffer>,
  receipt: ReceiptFacts,
): StoredMessage<Buffer | AsyncIterable<Buffer>> {
  const trace = traceHeaders({
    mailFrom: envelope.mailFrom,
    helo: receipt.client.helo,
    reverseDns: receipt.client.reverseDns,
    ip: receipt.client.ip,
    hostname: receipt.hostname,
    messageId: receipt.messageId,
    firstRecipient: envelope.recipients[0] ?? "",
    receivedAt: receipt.receivedAt,
  });
  const scan: Header[] =
    receipt.scan === "DISABLED"
      ? []
      : [
          { name: "X-SES-Spam-Verdict", value: receipt.scan },
          { name: "X-SES-Virus-Verdict", value: receipt.scan },
        ];
  const headers = Promise.resolve(receipt.auth).then((auth) => [...trace, ...scan, ...auth.headers]);
  if (Buffer.isBuffer(raw)) {
    const filter = new StoredBody();
    const parts = [...filter.push(raw), ...filter.end()];
    // Most messages need no change; copying each one whole made replay's 1 MB files GC-bound.
    return { headers, body: filter.changed ? Buffer.concat(parts) : raw };
  }
  return { headers, body: storedBodyStream(raw) };
}

async function* storedBodyStream(raw: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const filter = new StoredBody();
  for await (const chunk of raw) yield* filter.push(chunk);
  yield* filter.end();
}

const CR = 0x0d;
const LF = 0x0a;
const CRLF = Buffer.from("\r\n");
/** A line start still undecided after this many bytes (a run of blanks after the name) is kept. */
const UNDECIDED_LIMIT = 998;

type Line = "undecided" | "keep" | "drop";

/**
 * The body filter, chunk by chunk so that nothing is held whole: bare LF becomes CRLF (the SMTP
 * path stores DATA so, and a file with Unix line ends must give the same S3 object and SNS
 * content), a message that does not end in a line end gets one (as DATA always does), and the
 * message's own Return-Path fields, continuation lines included, are removed from its header
 * section, as final delivery does (RFC 5321 §4.4): the real one is prepended. Bare CR is kept,
 * as the SMTP path keeps it.
 */
class StoredBody {
  private afterCr = false;
  private last = -1;
  private inHeader = true;
  /** The current header line's first bytes while its kind is not yet known. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private line: Line = "undecided";
  /** Whether the current field is a Return-Path, for its continuation lines. */
  private dropField = false;
  /** Whether anything was added or dropped: otherwise the output is the input, byte for byte. */
  changed = false;

  push(chunk: Buffer): Buffer[] {
    if (chunk.length === 0) return [];
    const crlf = this.crlf(chunk);
    this.last = crlf[crlf.length - 1] as number;
    return this.inHeader ? this.header(crlf) : [crlf];
  }

  end(): Buffer[] {
    if (this.last === -1 || this.last === LF) return [];
    this.changed = true;
    return this.push(this.last === CR ? Buffer.from("\n") : CRLF);
  }

  private crlf(chunk: Buffer): Buffer {
    const parts: Buffer[] = [];
    let from = 0;
    for (let lf = chunk.indexOf(LF); lf !== -1; lf = chunk.indexOf(LF, lf + 1)) {
      const bare = lf > 0 ? chunk[lf - 1] !== CR : !this.afterCr;
      if (!bare) continue;
      parts.push(chunk.subarray(from, lf), CRLF);
      from = lf + 1;
    }
    this.afterCr = chunk[chunk.length - 1] === CR;
    if (from === 0) return chunk;
    this.changed = true;
    parts.push(chunk.subarray(from));
    return Buffer.concat(parts);
  }

  /** The header section's share of a CRLF chunk, less Return-Path fields; the rest passes on. */
  private header(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let pos = 0;
    while (pos < chunk.length && this.inHeader) {
      const lf = chunk.indexOf(LF, pos);
      const end = lf === -1 ? chunk.length : lf + 1;
      const piece = chunk.subarray(pos, end);
      if (this.line === "undecided") {
        this.pending.push(piece);
        this.pendingBytes += piece.length;
        this.line = this.kind(Buffer.concat(this.pending), lf !== -1);
        if (this.line === "keep") out.push(...this.pending);
        if (this.line === "drop") this.changed = true;
        if (this.line !== "undecided") {
          this.pending = [];
          this.pendingBytes = 0;
        }
      } else if (this.line === "keep") {
        out.push(piece);
      }
      if (lf !== -1) this.line = "undecided";
      pos = end;
    }
    if (pos < chunk.length) out.push(chunk.subarray(pos));
    return out;
  }

  /** What the line starting with `start` is; `whole`: it ends in `start`. */
  private kind(start: Buffer, whole: boolean): Line {
    const first = start[0];
    if (first === 0x20 || first === 0x09) return this.dropField ? "drop" : "keep";
    if (first === CR && start.length === 1 && !whole) return "undecided";
    if (first === CR && start[1] === LF) {
      // The empty line: the body follows, untouched.
      this.inHeader = false;
      return "keep";
    }
    const text = start.toString("latin1");
    if (/^return-path[ \t]*:/i.test(text)) {
      this.dropField = true;
      return "drop";
    }
    const maybe = !whole && this.pendingBytes < UNDECIDED_LIMIT && (/^return-path[ \t]*$/i.test(text) || "return-path".startsWith(text.toLowerCase()));
    if (maybe) return "undecided";
    this.dropField = false;
    return "keep";
  }
}
