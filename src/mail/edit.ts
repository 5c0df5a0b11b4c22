import type { Header } from "../rules/model.js";

/** RFC 5322 section 2.1.1: a line must not exceed 998 octets, excluding CRLF. */
const MAX_LINE_OCTETS = 998;

function checkName(name: string): void {
  if (name === "") throw new TypeError("invalid header name: empty");
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    // ftext: printable US-ASCII except ":"
    if (c < 0x21 || c > 0x7e || c === 0x3a) throw new TypeError(`invalid header name: ${JSON.stringify(name)}`);
  }
}

/**
 * Folds before whitespace so that each line stays within the RFC 5322 limit. Unfolding (removing
 * the CRLF only) gives the value back exactly, which is what parseHeaderBlock does. A run without
 * whitespace longer than a line cannot be folded and stays as it is.
 */
function fold(line: string): string {
  if (Buffer.byteLength(line, "utf8") <= MAX_LINE_OCTETS) return line;
  const parts: string[] = [];
  let rest = line;
  while (Buffer.byteLength(rest, "utf8") > MAX_LINE_OCTETS) {
    // Cutting by UTF-16 units under a byte limit is safe: a unit is at least one byte.
    let cut = -1;
    for (let i = Math.min(rest.length - 1, MAX_LINE_OCTETS); i > 0; i--) {
      const ch = rest[i];
      if ((ch === " " || ch === "\t") && Buffer.byteLength(rest.slice(0, i), "utf8") <= MAX_LINE_OCTETS) {
        cut = i;
        break;
      }
    }
    if (cut === -1) break;
    parts.push(rest.slice(0, cut));
    rest = rest.slice(cut);
  }
  parts.push(rest);
  return parts.join("\r\n");
}

/** `Name: value\r\n`, folded only when longer than a line may be. */
export function formatHeaderLine(h: Header): string {
  checkName(h.name);
  if (h.value.includes("\r") || h.value.includes("\n")) {
    throw new TypeError(`header ${h.name}: the value must not contain CR or LF`);
  }
  return `${fold(`${h.name}: ${h.value}`)}\r\n`;
}

/**
 * The bytes to put in front of a message, `headers[0]` on top. The lines always end in CRLF,
 * even in front of a message that uses bare LF: the stored message is CRLF (the SMTP path
 * normalises bare LF), RFC 5322 requires CRLF, and every reader here accepts either ending, so
 * mixing is harmless while rewriting the whole message to match would cost a full copy.
 */
export function prependedHeaderBytes(headers: readonly Header[]): Buffer {
  let text = "";
  for (const h of headers) text += formatHeaderLine(h);
  return Buffer.from(text, "utf8");
}

export function withPrependedHeaders(headers: readonly Header[], message: Buffer): Buffer {
  return Buffer.concat([prependedHeaderBytes(headers), message]);
}

/**
 * Streaming form of withPrependedHeaders: yields the new header lines, then the source chunk by
 * chunk, so the message is never held whole. Invalid headers throw here, before any byte flows.
 */
export function prependHeadersStream(
  headers: readonly Header[],
  source: NodeJS.ReadableStream | AsyncIterable<Buffer>,
): AsyncIterable<Buffer> {
  const prefix = prependedHeaderBytes(headers);
  return (async function* () {
    yield prefix;
    for await (const chunk of source) yield typeof chunk === "string" ? Buffer.from(chunk, "utf8") : chunk;
  })();
}
