import { DEFAULT_MAX_HEADER_BYTES } from "../mail/headers.js";

/**
 * The checks on DATA content, docs/behaviour.md §4: the size limit, SMTP smuggling, bare LF
 * normalised to CRLF, and the bounds of the header block. Fed the content smtp-server hands over
 * (dot-unstuffed, without the `.<CRLF>` of the final `<CRLF>.<CRLF>`) chunk by chunk, so nothing
 * here ever holds the message whole.
 *
 * smtp-server ends DATA only at `<CR><LF>.<CR><LF>` (or `.<CR><LF>` as the very first line), so
 * whatever a client puts behind any other line ending around a dot (a second MAIL FROM, RCPT TO,
 * DATA and message) stays inside this one DATA and reaches this scanner, never the command
 * parser: refusing the whole DATA refuses the "second message" with it. Some receiver ends DATA
 * at each of those other endings, so every one is refused: a dot with a CR, LF or CRLF before it
 * and after it, unless both are CRLF (a bare CR is one not followed by LF).
 *
 * The sequences are looked for in that content rather than on the wire. smtp-server only removes
 * a dot that follows an LF and precedes another dot, so none can be hidden by unstuffing.
 * Unstuffing can make one appear, though: a lone-dot line goes `<CR><LF>..<CR><LF>` on the wire
 * and is `<CR><LF>.<CR><LF>` in content, which is why only that one is let through. Next to a
 * bare LF the two cannot be told apart, so a dot-stuffed line beside a bare LF (`<LF>..<LF>` on
 * the wire) is refused too: such a message is malformed already. A dot whose verdict needs bytes
 * past the content seen so far waits for the next chunk; the content of a whole DATA always ends
 * with the CRLF of its last line (smtp-server strips only the `.<CR><LF>` after it), so every dot,
 * a `<CR><LF>.<CR>` at the very end included, is judged.
 */
export type ScanViolation = "size" | "smuggling" | "header-limit";

/**
 * The header block (up to and including its empty line; the whole content if it has none). Its
 * parsing for authentication (mailauth 4.13, in a worker thread: src/mail/auth-pool.ts, which
 * counts a worker silent for long as hung) is not linear. Measured on the main thread:
 * one field folded over 10,000 lines 33 ms, 20,000 lines 0.8 s, 40,000 lines 7 s (parseHeaders
 * copies the field's array of lines for each continuation line); a Received field of short
 * words 25 ms at 8 KB, 0.6 s at 32 KB, 2 s at 64 KB (parseReceived rebuilds the joined value per
 * word), ten such 100 KB fields 66 s; a 1 MB From of addresses 90 s. Hence a line bound, and a
 * tight bound on the fields mailauth parses beyond splitting them. Same block size as
 * `src/mail/headers.ts` reads back.
 */
export const MAX_HEADER_BLOCK_BYTES = DEFAULT_MAX_HEADER_BYTES;
/** Lines of the header block, continuation lines included; real mail has a few hundred at most. */
export const MAX_HEADER_LINES = 1_000;
/** One field with its continuation lines: Postfix's header_size_limit. */
export const MAX_HEADER_FIELD_BYTES = 102_400;
/** One field that authentication parses (Received, From, Return-Path, DKIM-Signature). */
export const MAX_PARSED_FIELD_BYTES = 8 * 1024;
/** Postfix's hopcount_limit: more Received fields than this is a mail loop. */
export const MAX_RECEIVED_FIELDS = 50;

const PARSED_FIELD = /^(?:received|from|return-path|dkim-signature)[ \t]*:/i;
const RECEIVED_FIELD = /^received[ \t]*:/i;
/** Enough of a field's first line to hold any of those names and its colon. */
const FIELD_HEAD_BYTES = 32;

const CR_DOT = Buffer.from("\r.");
const SP = 0x20;
const HT = 0x09;
/** Bytes of previous content kept: enough for the byte before an LF, the LF, the dot and the two after it. */
const TAIL = 4;
const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const CRLF = Buffer.from("\r\n");

/** A CR before a dot is bare, so any line-end byte after that dot is smuggling. */
function crDotSmuggles(data: Buffer): boolean {
  for (let at = data.indexOf(CR_DOT); at !== -1; at = data.indexOf(CR_DOT, at + 1)) {
    const after = data[at + 2];
    if (after === CR || after === LF) return true;
  }
  return false;
}

/**
 * Whether a dot after the LF at `lf` is smuggling; `bare`: that LF has no CR before it. A dot
 * whose verdict needs a byte past the end of `data` is left to the next chunk's seam check.
 */
function dotAfterLfSmuggles(data: Buffer, lf: number, bare: boolean): boolean {
  if (data[lf + 1] !== DOT) return false;
  const after = data[lf + 2];
  if (after === LF) return true;
  if (after !== CR) return false;
  return bare || (lf + 3 < data.length && data[lf + 3] !== LF);
}

/**
 * One pass over the line feeds finds both the smuggling that starts with an LF and every bare
 * LF; only a CR before a dot needs a search of its own. `afterCr`: the byte before `data` was a CR.
 */
function scanLineFeeds(data: Buffer, afterCr: boolean): { smuggling: boolean; bareLf: number[] | null } {
  if (crDotSmuggles(data)) return { smuggling: true, bareLf: null };
  let bareLf: number[] | null = null;
  for (let lf = data.indexOf(LF); lf !== -1; lf = data.indexOf(LF, lf + 1)) {
    const bare = lf > 0 ? data[lf - 1] !== CR : !afterCr;
    if (dotAfterLfSmuggles(data, lf, bare)) return { smuggling: true, bareLf: null };
    if (bare) (bareLf ??= []).push(lf);
  }
  return { smuggling: false, bareLf };
}

/**
 * Counts the header block as it streams, line by line, without keeping any of it. Fed the
 * normalised content: what the spool stores and authentication parses.
 */
class HeaderBounds {
  private blockBytes = 0;
  private lines = 0;
  private receivedFields = 0;
  private fieldBytes = 0;
  /** The start of the current field's first line, and its bound once the name is known. */
  private fieldHead = "";
  private fieldLimit = MAX_HEADER_FIELD_BYTES;
  /** Bytes of the line being read so far, and its first byte. */
  private lineBytes = 0;
  private lineFirst = -1;
  private ended = false;

  /** False once a bound is exceeded. */
  push(chunk: Buffer): boolean {
    let pos = 0;
    while (!this.ended && pos < chunk.length) {
      const lf = chunk.indexOf(LF, pos);
      const next = lf === -1 ? chunk.length : lf + 1;
      if (this.lineBytes === 0) {
        this.lineFirst = chunk[pos] as number;
        // Any line but a continuation starts a field (the empty line too, harmlessly).
        if (this.lineFirst !== SP && this.lineFirst !== HT) this.startField();
      }
      const piece = next - pos;
      if (this.fieldBytes < FIELD_HEAD_BYTES) this.nameField(chunk.toString("latin1", pos, Math.min(next, pos + FIELD_HEAD_BYTES)));
      this.lineBytes += piece;
      this.fieldBytes += piece;
      this.blockBytes += piece;
      if (this.blockBytes > MAX_HEADER_BLOCK_BYTES || this.fieldBytes > this.fieldLimit) return false;
      if (lf === -1) break;
      const empty = this.lineBytes === 1 || (this.lineBytes === 2 && this.lineFirst === CR);
      if (empty) this.ended = true;
      else if (++this.lines > MAX_HEADER_LINES) return false;
      if (this.receivedFields > MAX_RECEIVED_FIELDS) return false;
      this.lineBytes = 0;
      pos = next;
    }
    return true;
  }

  private startField(): void {
    this.fieldBytes = 0;
    this.fieldHead = "";
    this.fieldLimit = MAX_HEADER_FIELD_BYTES;
  }

  private nameField(text: string): void {
    const before = this.fieldHead;
    this.fieldHead = (before + text).slice(0, FIELD_HEAD_BYTES);
    if (PARSED_FIELD.test(before) || !PARSED_FIELD.test(this.fieldHead)) return;
    this.fieldLimit = MAX_PARSED_FIELD_BYTES;
    if (RECEIVED_FIELD.test(this.fieldHead)) this.receivedFields++;
  }
}

export class DataScanner {
  /** Content bytes seen, as the client sent them (before normalisation), refused ones too. */
  bytes = 0;
  violation: ScanViolation | null = null;
  /**
   * The last content bytes. It starts as the CRLF that ended the DATA command, so that content
   * opening with `.<LF>` is seen as the `<CR><LF>.<LF>` it is on the wire.
   */
  private tail: Buffer = Buffer.from(CRLF);
  private readonly header = new HeaderBounds();

  constructor(private readonly maxBytes: number) {}

  /** The chunk with bare LF made CRLF, or null once the message is refused (and for good). */
  push(chunk: Buffer): Buffer | null {
    this.bytes += chunk.length;
    if (this.violation) return null;
    if (this.bytes > this.maxBytes) {
      this.violation = "size";
      return null;
    }
    // The seam catches a sequence cut by a chunk boundary. Its first LF is taken as not bare
    // (afterCr): a sequence starting there lies wholly in earlier content, judged already.
    const afterCr = this.tail[this.tail.length - 1] === CR;
    const seam = Buffer.concat([this.tail, chunk.subarray(0, TAIL)]);
    const found = scanLineFeeds(seam, true).smuggling ? null : scanLineFeeds(chunk, afterCr);
    if (!found || found.smuggling) {
      this.violation = "smuggling";
      return null;
    }
    const out = found.bareLf ? withCrlf(chunk, found.bareLf) : chunk;
    if (!this.header.push(out)) {
      this.violation = "header-limit";
      return null;
    }
    this.tail = Buffer.from(Buffer.concat([this.tail, chunk.subarray(-TAIL)]).subarray(-TAIL));
    return out;
  }
}

/** The chunk with a CR put before each LF at `bareLf`. */
function withCrlf(chunk: Buffer, bareLf: number[]): Buffer {
  const parts: Buffer[] = [];
  let from = 0;
  for (const lf of bareLf) {
    parts.push(chunk.subarray(from, lf), CRLF);
    from = lf + 1;
  }
  parts.push(chunk.subarray(from));
  return Buffer.concat(parts);
}
