/**
 * The checks on DATA content, SEMANTICS section 4: the size limit, SMTP smuggling, and bare LF
 * normalised to CRLF. Fed the content smtp-server hands over (dot-unstuffed, without the final
 * `<CRLF>.<CRLF>`) chunk by chunk, so nothing here ever holds the message whole.
 *
 * smtp-server ends DATA only at `<CR><LF>.<CR><LF>` (or `.<CR><LF>` as the very first line), never
 * at the four sequences SEMANTICS names, so whatever a client puts behind one of them (a second
 * MAIL FROM, RCPT TO, DATA and message) stays inside this one DATA and reaches this scanner, never
 * the command parser: refusing the whole DATA refuses the "second message" with it.
 *
 * The smuggling sequences are looked for in that content rather than on the wire. smtp-server
 * only removes a dot that follows an LF and precedes another dot, so none of the four sequences
 * can be hidden by unstuffing. Unstuffing can make one appear, though: a lone-dot line goes
 * `<CR><LF>..<CR><LF>` on the wire and is `<CR><LF>.<CR><LF>` in content, which is why
 * `<LF>.<CR><LF>` only counts with a bare LF. Next to a bare LF the two cannot be told apart, so
 * a dot-stuffed line beside a bare LF (`<LF>..<LF>` on the wire) is refused too: such a message
 * is malformed already.
 */
export type ScanViolation = "size" | "smuggling";

/** `<CR><LF>.<LF>` contains it, so this one pattern covers two of the four sequences. */
const LF_DOT_LF = Buffer.from("\n.\n");
const CR_DOT_CR = Buffer.from("\r.\r");
/** Smuggling only when the byte before is not a CR. */
const LF_DOT_CRLF = Buffer.from("\n.\r\n");
/** Bytes of previous content kept: the longest pattern less one, plus the byte before it. */
const TAIL = LF_DOT_CRLF.length;
const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const CRLF = Buffer.from("\r\n");

/** Whether `data` holds a sequence; a match at index 0 is left to the caller, who knows the byte before. */
function containsSmuggling(data: Buffer): boolean {
  if (data.includes(LF_DOT_LF) || data.includes(CR_DOT_CR)) return true;
  for (let at = data.indexOf(LF_DOT_CRLF, 1); at !== -1; at = data.indexOf(LF_DOT_CRLF, at + 1)) {
    if (data[at - 1] !== CR) return true;
  }
  return false;
}

/**
 * One pass over the chunk's line feeds finds both what smuggling starts with an LF and every
 * bare LF; only `<CR>.<CR>` needs a search of its own. Sequences cut by the chunk's end are
 * found by the next chunk's seam check. `afterCr`: the byte before the chunk was a CR.
 */
function scanLineFeeds(chunk: Buffer, afterCr: boolean): { smuggling: boolean; bareLf: number[] | null } {
  if (chunk.includes(CR_DOT_CR)) return { smuggling: true, bareLf: null };
  let bareLf: number[] | null = null;
  for (let lf = chunk.indexOf(LF); lf !== -1; lf = chunk.indexOf(LF, lf + 1)) {
    const bare = lf > 0 ? chunk[lf - 1] !== CR : !afterCr;
    if (chunk[lf + 1] === DOT) {
      const after = chunk[lf + 2];
      if (after === LF || (bare && after === CR && chunk[lf + 3] === LF)) return { smuggling: true, bareLf: null };
    }
    if (bare) (bareLf ??= []).push(lf);
  }
  return { smuggling: false, bareLf };
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

  constructor(private readonly maxBytes: number) {}

  /** The chunk with bare LF made CRLF, or null once the message is refused (and for good). */
  push(chunk: Buffer): Buffer | null {
    this.bytes += chunk.length;
    if (this.violation) return null;
    if (this.bytes > this.maxBytes) {
      this.violation = "size";
      return null;
    }
    // The seam catches a sequence cut by a chunk boundary, and one at the chunk's first byte.
    const afterCr = this.tail[this.tail.length - 1] === CR;
    const found = containsSmuggling(Buffer.concat([this.tail, chunk.subarray(0, TAIL)])) ? null : scanLineFeeds(chunk, afterCr);
    if (!found || found.smuggling) {
      this.violation = "smuggling";
      return null;
    }
    const out = found.bareLf ? withCrlf(chunk, found.bareLf) : chunk;
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
