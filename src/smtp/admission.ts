import net from "node:net";
import type { SMTPServerAddress, SMTPServerSession } from "smtp-server";
import { REPLIES, decideRecipient } from "../rules/recipient-policy.js";
import { decideIp } from "../rules/filters.js";
import type { CompiledFilters } from "../rules/filters.js";
import type { Identities, RuleSet } from "../rules/model.js";
import type { MailRefusalReason, RcptRefusalReason, RefusalReason, SmtpEvent } from "./events.js";
import { LISTENER_REPLIES, replyError } from "./replies.js";

/** Read at each decision, so that a reload applies to the next command without dropping connections. */
export interface ListenerPolicy {
  /** The active rule set; null when none is active. */
  ruleSet(): RuleSet | null;
  identities(): Identities;
  filters(): CompiledFilters;
}

export interface AdmissionSettings {
  /** Our name: `<postmaster>` is first decided as its postmaster. */
  hostname: string;
  policy: ListenerPolicy;
  maxConnections: number;
  maxConnectionsPerIp: number;
  maxRecipients: number;
  /** The client's name for the Received header, looked up while the conversation goes on. */
  reverseDns(ip: string): Promise<string | null>;
  emit(event: SmtpEvent): void;
}

/** A session let in. */
export interface SessionState {
  ip: string;
  reverseDns: Promise<string | null>;
  messages: number;
}

/**
 * The share of maxConnections kept for addresses that have no session open (docs/behaviour.md
 * §4), so that a few addresses holding many sessions cannot take them all.
 */
const FRESH_ADDRESS_SHARE = 0.1;

/**
 * RFC 6531: an address beyond ASCII needs SMTPUTF8 on MAIL FROM. smtp-server decodes commands
 * as UTF-8, so invalid bytes show up here as U+FFFD, non-ASCII too.
 */
function needsSmtpUtf8(address: string, mailFrom: SMTPServerAddress | false | undefined): boolean {
  const args = mailFrom ? (mailFrom.args as Record<string, unknown> | false) : false;
  const utf8 = args !== false && args.SMTPUTF8 === true;
  return !utf8 && /[^\x00-\x7f]/.test(address);
}

/**
 * With SMTPUTF8 an address must still be valid UTF-8 (RFC 6531 §3.2); smtp-server has already
 * turned invalid bytes into U+FFFD, which no real address contains, so that is the sign.
 */
function invalidUtf8(address: string): boolean {
  return address.includes("\uFFFD");
}

/**
 * A local part the mailbox back end cannot store as a name: a path separator, NUL, or a name of
 * the directory itself or its parent. Refused at RCPT time, since after the 250 the message could
 * only be dead-lettered.
 */
function unstorableLocalPart(address: string): boolean {
  const at = address.lastIndexOf("@");
  const local = at === -1 ? address : address.slice(0, at);
  // smtp-server keeps the quotes of a quoted local part; the name stored is what is inside them.
  const name = local.length > 1 && local.startsWith('"') && local.endsWith('"') ? local.slice(1, -1) : local;
  return /[/\\\0]/.test(name) || name === "." || name === "..";
}

type RecipientVerdict = { accepted: true } | { accepted: false; reason: RcptRefusalReason; reply: string };

/** What the listener refuses in a recipient before the rules are asked, or null. */
function recipientRefusal(address: string, mailFrom: SMTPServerAddress | false | undefined): RecipientVerdict | null {
  if (needsSmtpUtf8(address, mailFrom)) return { accepted: false, reason: "smtputf8-required", reply: LISTENER_REPLIES.nonAsciiAddress };
  if (invalidUtf8(address)) return { accepted: false, reason: "invalid-utf8", reply: LISTENER_REPLIES.invalidUtf8Address };
  if (unstorableLocalPart(address)) return { accepted: false, reason: "unstorable-local-part", reply: LISTENER_REPLIES.unstorableRecipient };
  return null;
}

function hostPort(address: string, port: number): string {
  return net.isIPv6(address) ? `[${address}]:${port}` : `${address}:${port}`;
}

/** Who gets a session, and the answers to MAIL FROM and RCPT TO (docs/behaviour.md §4). */
export class Admission {
  private readonly sessions = new Map<string, SessionState>();
  private readonly perIp = new Map<string, number>();
  /** maxConnections less the sessions kept for addresses with none open. */
  private readonly sharedConnections: number;

  constructor(private readonly settings: AdmissionSettings) {
    this.sharedConnections = settings.maxConnections - Math.floor(settings.maxConnections * FRESH_ADDRESS_SHARE);
  }

  /** The session let in under this ID, if it was. */
  session(id: string): SessionState | undefined {
    return this.sessions.get(id);
  }

  /** smtp-server's onConnect: null lets the session in, else the error it answers with. */
  connect(session: SMTPServerSession, ip: string, proxiedBy: string | null, closing: boolean): Error | null {
    const { emit, maxConnections, maxConnectionsPerIp } = this.settings;
    const refuse = (reason: RefusalReason, reply: string, filter?: string | null): Error => {
      emit({ type: "refused", session: session.id, ip, reason, reply, ...(filter !== undefined ? { filter } : {}) });
      return replyError(reply);
    };
    if (closing) return refuse("shutting-down", LISTENER_REPLIES.shuttingDown);
    const decision = decideIp(this.settings.policy.filters(), ip);
    if (decision.decision === "block") return refuse("blocked", REPLIES.accessDenied, decision.filter);
    if (this.sessions.size >= maxConnections) return refuse("too-many-connections", LISTENER_REPLIES.tooManyConnections);
    const fromIp = this.perIp.get(ip) ?? 0;
    if (fromIp >= maxConnectionsPerIp || (fromIp > 0 && this.sessions.size >= this.sharedConnections)) {
      return refuse("too-many-connections-from-ip", LISTENER_REPLIES.tooManyConnectionsFromIp);
    }
    this.perIp.set(ip, fromIp + 1);
    this.sessions.set(session.id, { ip, reverseDns: this.settings.reverseDns(ip), messages: 0 });
    emit({
      type: "connect",
      session: session.id,
      ip,
      port: session.remotePort,
      local: hostPort(session.localAddress, session.localPort),
      proxiedBy,
      tls: session.secure,
    });
    return null;
  }

  /** A session ended; nothing happens for one that was never let in. */
  close(session: SMTPServerSession): void {
    const state = this.sessions.get(session.id);
    if (!state) return;
    this.sessions.delete(session.id);
    const left = (this.perIp.get(state.ip) ?? 1) - 1;
    if (left > 0) this.perIp.set(state.ip, left);
    else this.perIp.delete(state.ip);
    this.settings.emit({ type: "close", session: session.id, ip: state.ip, messages: state.messages });
  }

  mailFrom(address: SMTPServerAddress, session: SMTPServerSession, ip: string, closing: boolean): Error | null {
    const { emit } = this.settings;
    const base = { type: "mail", session: session.id, ip, mailFrom: address.address } as const;
    const refuse = (reason: MailRefusalReason, reply: string): Error => {
      emit({ ...base, accepted: false, reason, reply });
      return replyError(reply);
    };
    if (closing) return refuse("shutting-down", LISTENER_REPLIES.shuttingDown);
    if (needsSmtpUtf8(address.address, address)) return refuse("smtputf8-required", LISTENER_REPLIES.nonAsciiAddress);
    if (invalidUtf8(address.address)) return refuse("invalid-utf8", LISTENER_REPLIES.invalidUtf8Address);
    emit({ ...base, accepted: true });
    return null;
  }

  rcptTo(address: SMTPServerAddress, session: SMTPServerSession, ip: string): Error | null {
    const { policy, emit } = this.settings;
    const decide = (recipient: string): RecipientVerdict =>
      recipientRefusal(recipient, session.envelope.mailFrom) ??
      decideRecipient(recipient, {
        ruleSet: policy.ruleSet(),
        identities: policy.identities(),
        tls: session.secure,
        acceptedSoFar: session.envelope.rcptTo.length,
        maxRecipients: this.settings.maxRecipients,
      });
    let decision: RecipientVerdict;
    if (address.address.toLowerCase() === "postmaster") {
      // RFC 5321 4.5.1, docs/behaviour.md §4: our host's postmaster, else that of the first
      // verified domain whose rules take one. The envelope keeps the address it was routed to.
      const own = `postmaster@${this.settings.hostname}`;
      decision = decide(own);
      address.address = own;
      for (const domain of policy.identities().domains) {
        if (decision.accepted) break;
        const route = `postmaster@${domain}`;
        const routed = decide(route);
        if (routed.accepted) [decision, address.address] = [routed, route];
      }
    } else {
      decision = decide(address.address);
    }
    const base = { type: "rcpt", session: session.id, ip, recipient: address.address } as const;
    if (decision.accepted) {
      emit({ ...base, accepted: true });
      return null;
    }
    emit({ ...base, accepted: false, reason: decision.reason, reply: decision.reply });
    return replyError(decision.reply);
  }
}
