import type { Header } from "../rules/model.js";
import type { AuthResult } from "./auth.js";

export interface ReceiptHeadersInput {
  /** Return-Path and Received, from traceHeaders (the SMTP listener makes them for a session). */
  trace: readonly Header[];
  /** The scan verdict of the matched rules; DISABLED when none scans, and then no X-SES headers. */
  scan: "GRAY" | "DISABLED";
  /** Authentication's headers (Received-SPF, Authentication-Results); none when it is off. */
  auth: Pick<AuthResult, "headers">;
}

/**
 * The headers put on top of every stored message, in SES's order (SEMANTICS 5): Return-Path,
 * Received, X-SES-Spam-Verdict, X-SES-Virus-Verdict, Received-SPF, Authentication-Results. The
 * daemon, replay and the testing library all take them from here, so that a Lambda tested
 * against replayed events sees the message the daemon would store.
 */
export function receiptHeaders(input: ReceiptHeadersInput): Header[] {
  const scan: Header[] =
    input.scan === "DISABLED"
      ? []
      : [
          { name: "X-SES-Spam-Verdict", value: input.scan },
          { name: "X-SES-Virus-Verdict", value: input.scan },
        ];
  return [...input.trace, ...scan, ...input.auth.headers];
}

/**
 * Bare LF to CRLF, as the SMTP path stores DATA: a file written with Unix line ends must give
 * the same S3 object and SNS content as the same message received over SMTP.
 */
export function toCrlf(bytes: Buffer): Buffer {
  let bare = false;
  for (let i = bytes.indexOf(0x0a); i !== -1 && !bare; i = bytes.indexOf(0x0a, i + 1)) bare = bytes[i - 1] !== 0x0d;
  // latin1 maps every byte to one code unit and back, so non-ASCII bytes pass unchanged.
  return bare ? Buffer.from(bytes.toString("latin1").replace(/\r?\n/g, "\r\n"), "latin1") : bytes;
}
