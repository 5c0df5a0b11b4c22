import type { RecipientRefusalReason } from "../rules/recipient-policy.js";
import type { DeadlineStage } from "./deadlines.js";

/*
 * Why something was refused, given by whoever decided it: logs show it and the daemon's
 * metrics label it (docs/behaviour.md §4), so nothing reads it back out of a reply's text.
 */

/** A connection turned away, before or at the greeting. */
export type RefusalReason =
  | "blocked"
  | "too-many-connections"
  | "too-many-connections-from-ip"
  | "too-many-pending"
  | "shutting-down"
  | "proxy-header-invalid"
  | "proxy-header-not-allowed"
  | "tls-handshake-failed";

export type MailRefusalReason = "shutting-down" | "smtputf8-required" | "invalid-utf8" | "size";

export type RcptRefusalReason = RecipientRefusalReason | "smtputf8-required" | "invalid-utf8" | "unstorable-local-part";

export type DataRefusalReason = "size" | "smuggling" | "header-limit" | "accept-failed" | "connection-lost";

/** Every reason the listener gives. */
export type ListenerRefusalReason = RefusalReason | MailRefusalReason | RcptRefusalReason | DataRefusalReason;

/**
 * What the listener reports, for logs and metrics. `session` is the SMTP session's ID (null before a
 * session exists), `ip` the client's address (the proxied one behind a load balancer).
 * - connect: a session was let in (past filters and limits) and greeted.
 * - refused: a connection was turned away, with the reply sent if any (none before the SMTP
 *   session: a bad PROXY header or TLS handshake just closes).
 * - mail, rcpt: each MAIL FROM and RCPT TO answer; data: each message accepted or refused, with
 *   its size as received and the time from DATA to the answer.
 * - deadline: a session was told 421 and closed for taking too long over a command line or DATA.
 * - close: a session that was let in has ended. error: smtp-server or socket trouble.
 */
export type SmtpEvent =
  | { type: "connect"; session: string; ip: string; port: number; local: string; proxiedBy: string | null; tls: boolean }
  | { type: "refused"; session: string | null; ip: string; reason: RefusalReason; reply: string | null; filter?: string | null; error?: string }
  | { type: "tls"; session: string; ip: string; protocol: string | null; cipher: string | null }
  | { type: "mail"; session: string; ip: string; mailFrom: string; accepted: true }
  | { type: "mail"; session: string; ip: string; mailFrom: string; accepted: false; reason: MailRefusalReason; reply: string }
  | { type: "rcpt"; session: string; ip: string; recipient: string; accepted: true }
  | { type: "rcpt"; session: string; ip: string; recipient: string; accepted: false; reason: RcptRefusalReason; reply: string }
  | { type: "data"; session: string; ip: string; accepted: true; messageId: string; size: number; ms: number }
  | {
      type: "data";
      session: string;
      ip: string;
      accepted: false;
      messageId: string;
      reason: DataRefusalReason;
      reply: string;
      size: number;
      ms: number;
      error?: string;
    }
  | { type: "deadline"; session: string; ip: string; stage: DeadlineStage; reply: string }
  | { type: "close"; session: string; ip: string; messages: number }
  | { type: "error"; session: string | null; ip: string | null; error: string };
