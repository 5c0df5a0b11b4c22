import { ActionError } from "../backend.js";

/**
 * Errors that carry no SMTP reply yet are final: nodemailer refuses the envelope before any
 * command (an address with a line break, no recipient: EENVELOPE) or the message is over the
 * size the server announced (EMESSAGE). Sending the same request again ends the same way.
 */
const FINAL_WITHOUT_REPLY = new Set(["EENVELOPE", "EMESSAGE"]);

interface SmtpErrorFields {
  code?: unknown;
  responseCode?: unknown;
  response?: unknown;
  command?: unknown;
}

/**
 * Classifies a failed SMTP or LMTP exchange for docs/behaviour.md §8. A 5xx reply is permanent
 * and a 4xx reply transient (RFC 5321 section 4.2.1). Without a reply, refused or reset
 * connections, timeouts, DNS and TLS failures are transient: they may pass before the retry
 * window ends. The server's reply text is kept in the message.
 */
export function classifySmtpError(error: unknown): ActionError {
  if (error instanceof ActionError) return error;
  const fields: SmtpErrorFields = typeof error === "object" && error !== null ? error : {};
  const message = describe(error, fields);
  const replyCode = typeof fields.responseCode === "number" ? fields.responseCode : undefined;
  if (replyCode !== undefined && replyCode >= 400 && replyCode < 600) {
    return new ActionError(replyCode >= 500 ? "permanent" : "transient", message, { cause: error });
  }
  if (replyCode === undefined && typeof fields.code === "string" && FINAL_WITHOUT_REPLY.has(fields.code)) {
    return new ActionError("permanent", message, { cause: error });
  }
  return new ActionError("transient", message, { cause: error });
}

function describe(error: unknown, fields: SmtpErrorFields): string {
  const text = error instanceof Error ? error.message : String(error);
  const reply = typeof fields.response === "string" ? fields.response : undefined;
  // nodemailer appends the reply to its message; other errors get it added here.
  const withReply = reply === undefined || text.includes(reply) ? text : `${text}: ${reply}`;
  return typeof fields.command === "string" && fields.command !== "API" ? `${fields.command}: ${withReply}` : withReply;
}
