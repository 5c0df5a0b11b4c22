import { Readable } from "node:stream";
import { createTransport } from "nodemailer";
import { ActionError } from "../backend.js";
import type { MailboxRequest } from "../backend.js";
import { classifySmtpError } from "./errors.js";

/** The SMTP or LMTP server that stands in for one WorkMail organization's mailboxes. */
export interface MailboxHost {
  host: string;
  port: number;
  /** LMTP (RFC 2033) instead of SMTP, e.g. for Dovecot or Cyrus. */
  lmtp?: boolean;
  /** TLS from the start; otherwise STARTTLS when the server offers it. */
  secure?: boolean;
  tls?: { rejectUnauthorized?: boolean };
}

/**
 * Delivers WorkMail actions to the host configured for the action's organization, with the
 * envelope of the request and the message streamed from its source. The declared SIZE lets the
 * server refuse an oversized message before any byte is sent.
 *
 * Every recipient must be accepted. When some are refused (at RCPT, or after DATA under LMTP)
 * the others may already have the message; the failure is still reported, transient when any
 * refusal was 4xx, so that a retry reaches the deferred ones, at the price of a duplicate for
 * the others (docs/behaviour.md §8 is at least once).
 */
export function smtpMailboxDelivery(
  hosts: Record<string /* organizationArn */, MailboxHost>,
): (request: MailboxRequest) => Promise<Record<string, unknown>> {
  const transports = new Map(
    Object.entries(hosts).map(([organizationArn, host]) => [
      organizationArn,
      {
        target: `${host.lmtp ? "lmtp" : "smtp"}://${host.host}:${host.port}`,
        transport: createTransport({
          host: host.host,
          port: host.port,
          lmtp: host.lmtp ?? false,
          secure: host.secure ?? false,
          ...(host.tls ? { tls: host.tls } : {}),
        }),
      },
    ]),
  );
  return async (request) => {
    const entry = transports.get(request.organizationArn);
    if (entry === undefined) {
      release(request.body);
      throw new ActionError("permanent", `no mailbox host is configured for WorkMail organization ${request.organizationArn}`);
    }
    let info;
    try {
      info = await entry.transport.sendMail({
        envelope: { from: request.mailFrom === "" ? false : request.mailFrom, to: request.recipients, size: request.contentLength },
        // Byte mode: backpressure counts bytes, not chunks of whatever size the source yields.
        raw: Readable.from(request.body, { objectMode: false }),
      });
    } catch (error) {
      throw classifySmtpError(error);
    }
    const refused = info.rejectedErrors ?? [];
    if (refused.length > 0 || info.rejected.length > 0) {
      const deferred = refused.some((e) => typeof e.responseCode === "number" && e.responseCode < 500);
      const detail = refused.map((e) => `${e.recipient ?? "?"}: ${e.response ?? e.message}`).join("; ");
      throw new ActionError(
        deferred ? "transient" : "permanent",
        `${entry.target} refused ${info.rejected.join(", ")} (${detail}); accepted ${info.accepted.join(", ") || "none"}`,
      );
    }
    return { host: entry.target, accepted: info.accepted, response: info.response };
  };
}

/**
 * The body may be a stream holding a file open, and it is not going to be read. Ending an
 * iterator that was never started would not reach the stream, so it is destroyed directly.
 */
function release(body: AsyncIterable<Buffer>): void {
  const destroy = (body as { destroy?: unknown }).destroy;
  if (typeof destroy === "function") destroy.call(body);
}
