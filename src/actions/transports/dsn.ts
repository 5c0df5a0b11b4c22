import { randomBytes } from "node:crypto";
import { link, mkdir, open, unlink } from "node:fs/promises";
import { join } from "node:path";
import { createTransport } from "nodemailer";
import { parseHeaderBlock } from "../../mail/headers.js";
import type { SendDsnRequest } from "../backend.js";
import { classifySmtpError } from "./errors.js";
import { syncPath } from "../durable.js";

/** Sends one DSN; resolves with what the executor records about the send. */
export type DsnSender = (request: SendDsnRequest) => Promise<Record<string, unknown>>;

/**
 * Hands DSNs to an SMTP relay given as `smtp://[user:pass@]host[:port][?options]` (STARTTLS when
 * offered) or `smtps://...` (TLS from the start); query options are nodemailer's, e.g.
 * `tls.rejectUnauthorized=false`. The envelope is `MAIL FROM:<>` (RFC 5321 section 4.5.5: a DSN
 * has the null sender, so that it can never cause another DSN) and `RCPT TO:` the request's
 * address; the message goes out byte for byte as built.
 */
export function smtpDsnSender(relayUrl: string): DsnSender {
  const url = new URL(relayUrl);
  if (url.protocol !== "smtp:" && url.protocol !== "smtps:") {
    throw new TypeError(`DSN relay must be an smtp:// or smtps:// URL, got ${url.protocol}`);
  }
  // What the result records: credentials and options stay out of events and traces.
  const relay = `${url.protocol}//${url.host}`;
  const transport = createTransport(relayUrl);
  return async (request) => {
    let info;
    try {
      info = await transport.sendMail({
        envelope: { from: false, to: request.to, size: request.raw.length },
        raw: request.raw,
      });
    } catch (error) {
      throw classifySmtpError(error);
    }
    const messageId = parseHeaderBlock(request.raw).find((h) => h.name.toLowerCase() === "message-id")?.value.trim();
    return { relay, response: info.response, ...(messageId ? { messageId } : {}) };
  };
}

let sequence = 0;

/** The dot-name a DSN is written under before it is linked into place (start-up removes strays). */
export const OUTBOX_TEMP_NAME = /^\.\d{8}T\d{9}Z-\d{6}-[0-9a-f]{12}\.eml\.tmp$/;

/**
 * Writes each DSN to `<dir>/<UTC time>-<sequence>-<random>.eml`, for a pickup process or for
 * inspection. The file appears complete or not at all: it is written and fsynced under a
 * dot-name, hard-linked to its final name (link, unlike rename, fails instead of replacing an
 * existing file, so nothing is ever overwritten), and the directory is fsynced before the
 * promise resolves. A crash can leave a `.*.tmp` file behind, never a partial `.eml`.
 *
 * The envelope recipient is not stored apart: it is the DSN's To address.
 */
export function directoryDsnSender(dir: string): DsnSender {
  return async (request) => {
    await mkdir(dir, { recursive: true });
    const stamp = new Date().toISOString().replace(/[-:.]/g, "");
    sequence = (sequence + 1) % 1_000_000;
    const name = `${stamp}-${String(sequence).padStart(6, "0")}-${randomBytes(6).toString("hex")}.eml`;
    const file = join(dir, name);
    const temporary = join(dir, `.${name}.tmp`);
    const handle = await open(temporary, "wx");
    try {
      await handle.writeFile(request.raw);
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await link(temporary, file);
    } finally {
      await unlink(temporary);
    }
    await syncPath(dir);
    return { file };
  };
}
