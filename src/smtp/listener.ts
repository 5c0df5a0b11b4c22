import net from "node:net";
import type { AddressInfo, Server, Socket } from "node:net";
import { performance } from "node:perf_hooks";
import { Readable, finished } from "node:stream";
import tls from "node:tls";
import { SMTPServer } from "smtp-server";
import type { SMTPServerAddress, SMTPServerDataStream, SMTPServerOptions, SMTPServerSession } from "smtp-server";
import type { SMTPConnection } from "smtp-server/lib/smtp-connection.js";
import { DEFAULTS } from "../config/defaults.js";
import { newMessageId } from "../mail/message-id.js";
import { errorText } from "../ops/log.js";
import { DEFAULT_MAX_RECIPIENTS, REPLIES, decideRecipient } from "../rules/acceptance.js";
import type { RecipientDecision } from "../rules/acceptance.js";
import { canonicalIp, compileFilters, decideIp } from "../rules/filters.js";
import type { CompiledFilters } from "../rules/filters.js";
import type { Header, Identities, RuleSet } from "../rules/model.js";
import { InputDeadlines } from "./deadlines.js";
import type { DeadlineStage, InputDeadlineSettings } from "./deadlines.js";
import { tweakServer } from "./patches.js";
import { readProxyHeader } from "./proxy.js";
import type { ProxiedClient } from "./proxy.js";
import { traceHeaders } from "./received.js";
import { DEFAULT_REVERSE_DNS_TIMEOUT_MS, reverseLookup, systemReverseResolver } from "./reverse-dns.js";
import type { ReverseResolver } from "./reverse-dns.js";
import { DataScanner } from "./scanner.js";

/** Read at each decision, so that a reload applies to the next command without dropping connections. */
export interface ListenerPolicy {
  /** The active rule set; null when none is active. */
  ruleSet(): RuleSet | null;
  identities(): Identities;
  filters(): CompiledFilters;
}

export interface ListenAddress {
  host: string;
  /** 0 picks a free port; addresses() tells which. */
  port: number;
  /** TLS from the first byte (port 465 style) instead of STARTTLS. */
  implicitTls?: boolean;
}

export interface BoundAddress {
  host: string;
  port: number;
  implicitTls: boolean;
}

export interface ClientInfo {
  /** The client's address: the proxied one behind a load balancer that sends PROXY headers. */
  ip: string;
  port: number;
  /** The HELO/EHLO name, lower-cased. */
  helo: string;
  reverseDns: string | null;
  tls: boolean;
}

/** One message being accepted. */
export interface AcceptedSession {
  messageId: string;
  /** "" for the null sender. */
  mailFrom: string;
  /** Accepted RCPT TO addresses, in the order given. */
  recipients: string[];
  client: ClientInfo;
  /** When DATA began; the date of the Received header. */
  receivedAt: Date;
  /**
   * Return-Path and Received (SEMANTICS 5), top first. They are handed over beside the body,
   * not in it, so that the caller can put headers it learns from the whole body (SPF, DKIM,
   * DMARC) below them without holding the message in memory.
   */
  receiptHeaders: Header[];
}

export interface ReverseDnsOptions {
  /** How long after connect DATA may still wait for the name (the lookup runs during the conversation). Default 1 s. */
  timeoutMs?: number;
  /** Replaces the system resolver (tests, custom DNS). */
  resolve?: ReverseResolver;
}

export interface SmtpListenerOptions {
  /** Several addresses, IPv4 and IPv6. */
  listen: ListenAddress[];
  /** Our name: greeting, Received `by`. */
  hostname: string;
  /** Text after `220 <hostname> ESMTP`. */
  banner?: string;
  /** STARTTLS on plain listeners; required by implicitTls listeners. Without it STARTTLS is not offered. */
  tls?: { key: string | Buffer; cert: string | Buffer };
  /** Load balancer IPs or CIDRs that must open each connection with a PROXY header (v1 or v2); nobody else may send one. */
  proxyProtocolFrom?: string[];
  /** Open SMTP sessions in all. Default 1000; the last tenth only for addresses with none open (docs/behaviour.md §4). */
  maxConnections?: number;
  /** Open SMTP sessions per client IP. Default 50. */
  maxConnectionsPerIp?: number;
  timeouts?: {
    /** Idle time allowed to a client that owes us input; also bounds the PROXY header and the TLS handshake. Default 5 minutes (RFC 5321 4.5.3.2.7). */
    socketMs?: number;
    /** From a command line's first byte to its line feed, not reset by bytes. Default 1 minute. */
    commandMs?: number;
    /** DATA's budget at the 354 and its cap, not reset by bytes. Default 5 minutes. */
    dataMs?: number;
    /** Each byte of DATA adds 1/minDataBytesPerSecond s to DATA's budget. Default 500. */
    minDataBytesPerSecond?: number;
    /** Default grace of close(). Default 30 s. */
    closeMs?: number;
  };
  /** Default 40 MB (SEMANTICS 4). */
  maxMessageBytes?: number;
  /** Default 100 (SEMANTICS 4). */
  maxRecipients?: number;
  /** Greet after this long and refuse clients that talk before the greeting. Default 0: greet at once. */
  earlyTalkerCheckMs?: number;
  /** Reverse DNS of the client for the Received header. Default on, 1 s. */
  reverseDns?: boolean | ReverseDnsOptions;
  policy: ListenerPolicy;
  /** Randomness for message and session IDs. */
  random: (n: number) => Uint8Array;
  /**
   * Where each message's ID comes from, given the way to make a new one: the daemon takes them
   * from the spool, which has a file ready for each. Default: a new ID.
   */
  claimMessageId?: (fresh: () => string) => string;
  clock?: () => Date;
  /**
   * Gets the message as the client sent it, bare LF normalised, smuggling-checked and
   * size-enforced (the SEMANTICS 5 headers are in `session.receiptHeaders`). Must resolve only
   * once the message is durable; `250` is answered then. A rejection answers `451 4.3.0` and
   * nothing is accepted.
   */
  accept: (session: AcceptedSession, body: AsyncIterable<Buffer>) => Promise<void>;
  onEvent?: (event: SmtpEvent) => void;
}

export type RefusalReason =
  | "blocked"
  | "too-many-connections"
  | "too-many-connections-from-ip"
  | "too-many-pending"
  | "shutting-down"
  | "proxy-header-invalid"
  | "proxy-header-not-allowed"
  | "tls-handshake-failed";

export type DataRefusalReason = "size" | "smuggling" | "header-limit" | "accept-failed" | "connection-lost";

/**
 * What the listener did, for logs and metrics. `session` is the SMTP session's ID (null before a
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
  | { type: "mail"; session: string; ip: string; mailFrom: string; accepted: false; reply: string }
  | { type: "rcpt"; session: string; ip: string; recipient: string; accepted: true }
  | { type: "rcpt"; session: string; ip: string; recipient: string; accepted: false; reply: string }
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

export const DEFAULT_MAX_MESSAGE_BYTES = DEFAULTS.smtp.maxMessageBytes;
const DEFAULT_MAX_CONNECTIONS = DEFAULTS.smtp.maxConnections;
/**
 * The share of maxConnections kept for addresses that have no session open (docs/behaviour.md
 * §4), so that a few addresses holding many sessions cannot take them all.
 */
const FRESH_ADDRESS_SHARE = 0.1;
// Postfix's smtpd_client_connection_count_limit.
const DEFAULT_MAX_CONNECTIONS_PER_IP = DEFAULTS.smtp.maxConnectionsPerIp;
const DEFAULT_SOCKET_TIMEOUT_MS = DEFAULTS.smtp.socketTimeoutMs;
const DEFAULT_CLOSE_GRACE_MS = DEFAULTS.shutdownGraceMs;

/** Replies SEMANTICS leaves to us. */
export const LISTENER_REPLIES = {
  tooManyConnections: "421 4.7.0 Too many connections, try again later",
  tooManyConnectionsFromIp: "421 4.7.0 Too many connections from your address, try again later",
  commandDeadline: "421 4.4.2 Command not received in time, closing connection",
  dataDeadline: "421 4.4.2 Message not received in time, closing connection",
  shuttingDown: "421 4.3.2 Service shutting down, try again later",
  localError: "451 4.3.0 Local error in processing, try again later",
  proxyNotAllowed: "554 5.7.1 PROXY header not accepted from this address",
  unstorableRecipient: "553 5.1.3 Recipient local part not accepted here",
  nonAsciiAddress: "553 5.6.7 Non-ASCII address without SMTPUTF8",
  // A size limit, like the message's own (docs/behaviour.md §4).
  headerTooLarge: "552 5.3.4 Message header block exceeds local limits",
} as const;

const DATA_REFUSAL_REPLIES: Record<DataRefusalReason, string> = {
  size: REPLIES.sizeExceeded,
  smuggling: REPLIES.smuggling,
  "header-limit": LISTENER_REPLIES.headerTooLarge,
  "accept-failed": LISTENER_REPLIES.localError,
  "connection-lost": LISTENER_REPLIES.localError,
};

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

/** What the listener refuses in a recipient before the rules are asked, or null. */
function recipientRefusal(address: string, mailFrom: SMTPServerAddress | false | undefined): string | null {
  if (needsSmtpUtf8(address, mailFrom)) return LISTENER_REPLIES.nonAsciiAddress;
  if (unstorableLocalPart(address)) return LISTENER_REPLIES.unstorableRecipient;
  return null;
}

function replyError(reply: string): Error & { responseCode: number } {
  return Object.assign(new Error(reply.slice(4)), { responseCode: Number(reply.slice(0, 3)) });
}

function splitReply(reply: string): { code: number; message: string } {
  return { code: Number(reply.slice(0, 3)), message: reply.slice(4) };
}

function hostPort(address: string, port: number): string {
  return net.isIPv6(address) ? `[${address}]:${port}` : `${address}:${port}`;
}

/** Why a connection was dropped before its SMTP session began. */
class EarlyRefusal extends Error {
  constructor(
    readonly reason: RefusalReason,
    cause: unknown,
  ) {
    super(errorText(cause));
  }
}

interface DeliveryFailure {
  reason: DataRefusalReason;
  error: unknown;
}

interface SessionState {
  ip: string;
  reverseDns: Promise<string | null>;
  messages: number;
}

const BODY_BUFFERED_CHUNKS = 8;

/**
 * Content of DATA through the scanner into `body`, with backpressure. Reading goes on to the end
 * of DATA whatever happens to `body` (refused, abandoned by its reader): the reply may only be
 * sent after the final dot, and a violation anywhere in DATA must be seen. `complete` is false
 * when the client went away before the end.
 */
function checkedContent(stream: SMTPServerDataStream, scanner: DataScanner): { body: Readable; complete: Promise<boolean> } {
  let passing = true;
  // Chunks pass as they are: in byte mode a reader would get the buffered chunks concatenated
  // into a new buffer, a copy of most of the message. A few chunks of room let the client go on
  // sending while the spool writes what came before.
  const body = new Readable({ read: () => void stream.resume(), objectMode: true, highWaterMark: BODY_BUFFERED_CHUNKS });
  // The reader gets a refusal through its iterator, even one that starts reading later; without a
  // listener the same error would also be thrown as an uncaught exception.
  body.on("error", () => undefined);
  const stopPassing = (error?: Error): void => {
    if (!passing) return;
    passing = false;
    body.destroy(error);
    stream.resume();
  };
  body.once("close", () => stopPassing());
  stream.on("data", (chunk: Buffer) => {
    const out = scanner.push(chunk);
    if (!passing) return;
    if (out === null) return stopPassing(new Error(`message refused: ${scanner.violation}`));
    if (!body.push(out)) stream.pause();
  });
  const complete = new Promise<boolean>((resolve) => {
    finished(stream, { writable: false }, (error) => {
      if (error) stopPassing(error);
      else if (passing) body.push(null);
      resolve(!error);
    });
  });
  return { body, complete };
}


export class SmtpListener {
  private readonly servers: Server[] = [];
  private readonly bound: BoundAddress[] = [];
  private readonly smtpPlain: SMTPServer;
  private smtpImplicit: SMTPServer | undefined;
  private readonly proxyFrom: CompiledFilters | null;
  private readonly resolveReverse: ReverseResolver | null;
  private readonly reverseTimeoutMs: number;
  private readonly maxMessageBytes: number;
  private readonly maxRecipients: number;
  private readonly maxConnections: number;
  private readonly maxConnectionsPerIp: number;
  private readonly socketMs: number;
  /** maxConnections less the sessions kept for addresses with none open. */
  private readonly sharedConnections: number;
  private readonly deadlineSettings: InputDeadlineSettings;
  private readonly clock: () => Date;
  /** Connections not in an SMTP session yet: reading the PROXY header, or in the TLS handshake. */
  private readonly preSession = new Set<Socket>();
  /**
   * SMTP sessions from connect() to smtp-server's onClose, which comes for every one of them
   * (a socket's own 'close' listeners do not survive STARTTLS: smtp-server removes them all).
   */
  private readonly open = new Set<string>();
  /** The client's canonical address and, when proxied, its load balancer, by session ID, for onConnect. */
  private readonly arriving = new Map<string, { ip: string; proxiedBy: string | null }>();
  private readonly deadlines = new Map<string, InputDeadlines>();
  private readonly sessions = new Map<string, SessionState>();
  private readonly perIp = new Map<string, number>();
  /** Messages being received: close() waits for them so that no accept() is cut off. */
  private readonly inFlight = new Set<Promise<unknown>>();
  private closing: Promise<void> | null = null;
  /** Set by close(): called once no connection is left. */
  private onIdle: (() => void) | null = null;

  private constructor(private readonly options: SmtpListenerOptions) {
    if (options.listen.some((address) => address.implicitTls) && !options.tls) {
      throw new Error("an implicitTls listener needs the tls option (key and cert)");
    }
    this.maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.maxRecipients = options.maxRecipients ?? DEFAULT_MAX_RECIPIENTS;
    this.maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    this.maxConnectionsPerIp = options.maxConnectionsPerIp ?? DEFAULT_MAX_CONNECTIONS_PER_IP;
    this.socketMs = options.timeouts?.socketMs ?? DEFAULT_SOCKET_TIMEOUT_MS;
    this.sharedConnections = this.maxConnections - Math.floor(this.maxConnections * FRESH_ADDRESS_SHARE);
    this.deadlineSettings = {
      commandMs: options.timeouts?.commandMs ?? DEFAULTS.smtp.commandDeadlineMs,
      dataMs: options.timeouts?.dataMs ?? DEFAULTS.smtp.dataDeadlineMs,
      minDataBytesPerSecond: options.timeouts?.minDataBytesPerSecond ?? DEFAULTS.smtp.minDataBytesPerSecond,
    };
    this.clock = options.clock ?? (() => new Date());
    this.proxyFrom = options.proxyProtocolFrom?.length
      ? compileFilters(options.proxyProtocolFrom.map((cidr, i) => ({ name: `proxy-${i}`, policy: "Allow", cidr })))
      : null;
    const reverse = options.reverseDns ?? true;
    const reverseOptions = typeof reverse === "object" ? reverse : {};
    this.reverseTimeoutMs = reverseOptions.timeoutMs ?? DEFAULT_REVERSE_DNS_TIMEOUT_MS;
    this.resolveReverse = reverse === false ? null : (reverseOptions.resolve ?? systemReverseResolver(this.reverseTimeoutMs));
    this.smtpPlain = this.smtpServer(false);
  }

  /** Listens on every address, or on none: a failure closes what was opened and rejects. */
  static async start(options: SmtpListenerOptions): Promise<SmtpListener> {
    const listener = new SmtpListener(options);
    try {
      for (const address of options.listen) await listener.listen(address);
    } catch (error) {
      await listener.close(0);
      throw error;
    }
    return listener;
  }

  addresses(): BoundAddress[] {
    return this.bound.map((address) => ({ ...address }));
  }

  /** Open client connections, including those not in an SMTP session yet. */
  connections(): number {
    return this.preSession.size + this.open.size;
  }

  /**
   * Stops accepting connections. Idle sessions are told 421 at once; a session in the middle of a
   * transaction may finish it (its next MAIL FROM gets 421) within `graceMs`, after which every
   * remaining one is told 421 and closed. Resolves once every connection is gone and every
   * message being received has been accepted or refused.
   */
  close(graceMs = this.options.timeouts?.closeMs ?? DEFAULT_CLOSE_GRACE_MS): Promise<void> {
    this.closing ??= this.shutDown(graceMs);
    return this.closing;
  }

  private async shutDown(graceMs: number): Promise<void> {
    // net.Server.close calls back once every socket it accepted has closed; onClose of the sessions may come a tick later.
    const closed = this.servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve())));
    const idle = new Promise<void>((resolve) => (this.onIdle = resolve));
    this.checkIdle();
    const ended = Promise.all([...closed, idle]);
    for (const socket of this.preSession) socket.destroy();
    for (const connection of this.smtpConnections()) {
      // No envelope yet (before the greeting) or none in progress: nothing to finish.
      if (!connection.session.envelope?.mailFrom) this.sayShuttingDown(connection);
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([ended, new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    clearTimeout(timer);
    // smtp-server destroys each socket a few seconds after its 421 if the client keeps it open.
    for (const connection of this.smtpConnections()) this.sayShuttingDown(connection);
    await ended;
    await Promise.allSettled(this.inFlight);
  }

  private checkIdle(): void {
    if (this.connections() === 0) this.onIdle?.();
  }

  private smtpConnections(): SMTPConnection[] {
    return [...this.smtpPlain.connections, ...(this.smtpImplicit?.connections ?? [])];
  }

  private sayShuttingDown(connection: SMTPConnection): void {
    const { code, message } = splitReply(LISTENER_REPLIES.shuttingDown);
    // smtp-server closes the connection after any 421.
    connection.send(code, message);
  }

  private emit(event: SmtpEvent): void {
    try {
      this.options.onEvent?.(event);
    } catch {
      // An event sink that throws must not take an SMTP session down with it.
    }
  }

  /** One smtp-server instance per TLS mode: it takes "secure" from its options, not per connection. */
  private smtp(implicitTls: boolean): SMTPServer {
    if (!implicitTls) return this.smtpPlain;
    this.smtpImplicit ??= this.smtpServer(true);
    return this.smtpImplicit;
  }

  private smtpServer(implicitTls: boolean): SMTPServer {
    const { tls: certificate } = this.options;
    const serverOptions: SMTPServerOptions = {
      secure: implicitTls,
      name: this.options.hostname,
      banner: this.options.banner,
      size: this.maxMessageBytes,
      logger: false,
      // Receiving only: nobody logs in to an MX.
      authOptional: true,
      disabledCommands: certificate ? ["AUTH"] : ["AUTH", "STARTTLS"],
      hideSTARTTLS: !certificate,
      // Done here, concurrently with the conversation, instead of before the greeting.
      disableReverseLookup: true,
      socketTimeout: this.socketMs,
      ...(certificate ? { key: certificate.key, cert: certificate.cert } : {}),
      onConnect: (session, callback) => callback(this.onConnect(session)),
      onSecure: (socket, session, callback) => {
        this.emit({
          type: "tls",
          session: session.id,
          ip: this.ipOf(session),
          protocol: session.tlsOptions ? session.tlsOptions.version : null,
          cipher: session.tlsOptions ? session.tlsOptions.name : null,
        });
        // smtp-server pipes the TLS socket into its parser in the callback: watched only after that.
        callback();
        this.deadlines.get(session.id)?.watch(socket as Socket);
      },
      onMailFrom: (address, session, callback) => callback(this.onMailFrom(address, session)),
      onRcptTo: (address, session, callback) => callback(this.onRcptTo(address, session)),
      onData: (stream, session, callback) => {
        this.onData(stream, session).then(
          (reply) => (reply.error ? callback(reply.error) : callback(null, reply.text)),
          (error: unknown) => {
            this.emit({ type: "error", session: session.id, ip: this.ipOf(session), error: errorText(error) });
            callback(replyError(LISTENER_REPLIES.localError));
          },
        );
      },
      onClose: (session) => this.onClose(session),
    };
    const server = new SMTPServer(serverOptions);
    server.on("error", (error: Error & { remoteAddress?: string }) => {
      this.emit({ type: "error", session: null, ip: error.remoteAddress ?? null, error: error.message });
    });
    tweakServer(server, {
      earlyTalkerCheckMs: this.options.earlyTalkerCheckMs ?? 0,
      declaredSizeRefusal: splitReply(REPLIES.sizeExceeded),
      onDeclaredSizeRefused: (connection, mailFrom) =>
        this.emit({
          type: "mail",
          session: connection.session.id,
          ip: this.ipOf(connection.session),
          mailFrom,
          accepted: false,
          reply: REPLIES.sizeExceeded,
        }),
      proxyRefusal: splitReply(LISTENER_REPLIES.proxyNotAllowed),
      onProxyRefused: (connection) =>
        this.emit({
          type: "refused",
          session: connection.session.id,
          ip: this.ipOf(connection.session),
          reason: "proxy-header-not-allowed",
          reply: LISTENER_REPLIES.proxyNotAllowed,
        }),
    });
    return server;
  }

  private listen(address: ListenAddress): Promise<void> {
    return new Promise((resolve, reject) => {
      const local: BoundAddress = { host: address.host, port: address.port, implicitTls: address.implicitTls ?? false };
      const smtp = this.smtp(local.implicitTls);
      const server = net.createServer((socket) => this.onSocket(socket, local, smtp));
      server.once("error", reject);
      server.listen({ host: address.host, port: address.port }, () => {
        server.off("error", reject);
        server.on("error", (error) => this.emit({ type: "error", session: null, ip: null, error: error.message }));
        local.port = (server.address() as AddressInfo).port;
        this.servers.push(server);
        this.bound.push(local);
        resolve();
      });
    });
  }

  private onSocket(socket: Socket, local: BoundAddress, smtp: SMTPServer): void {
    // Errors of a socket that never reaches its session end in 'close'; SMTPConnection adds its own handler.
    socket.on("error", () => undefined);
    // docs/behaviour.md §4: the one place the peer's address enters, the PROXY header's being the other.
    const peer = canonicalIp(socket.remoteAddress ?? "");
    const proxied = this.proxyFrom !== null && decideIp(this.proxyFrom, peer).decision === "allow";
    if (!proxied && !local.implicitTls) return this.openSession(smtp, socket, peer, null, null);
    if (this.preSession.size >= this.maxConnections) {
      this.emit({ type: "refused", session: null, ip: peer, reason: "too-many-pending", reply: null });
      socket.destroy();
      return;
    }
    this.preSession.add(socket);
    this.prepare(socket, local, proxied).then(
      ({ stream, client }) => {
        this.preSession.delete(socket);
        this.openSession(smtp, stream, peer, client, proxied ? peer : null);
      },
      (error: EarlyRefusal) => {
        this.preSession.delete(socket);
        this.emit({ type: "refused", session: null, ip: peer, reason: error.reason, reply: null, error: error.message });
        socket.destroy();
        this.checkIdle();
      },
    );
  }

  /** The PROXY header, then the TLS handshake of an implicit-TLS listener (a load balancer passes TLS through). */
  private async prepare(socket: Socket, local: BoundAddress, proxied: boolean): Promise<{ stream: Socket; client: ProxiedClient }> {
    const client = proxied
      ? await readProxyHeader(socket, this.socketMs).catch((error: unknown) => Promise.reject(new EarlyRefusal("proxy-header-invalid", error)))
      : null;
    if (!local.implicitTls) return { stream: socket, client };
    const stream = await this.handshake(socket).catch((error: unknown) =>
      Promise.reject(new EarlyRefusal("tls-handshake-failed", error)),
    );
    return { stream, client };
  }

  private handshake(socket: Socket): Promise<tls.TLSSocket> {
    return new Promise((resolve, reject) => {
      // The context smtp-server built from the tls option, the one STARTTLS uses too.
      const secure = new tls.TLSSocket(socket, { isServer: true, secureContext: this.smtp(true).secureContext.get("*") });
      const fail = (error?: Error): void => {
        clearTimeout(timer);
        secure.destroy();
        reject(error ?? new Error("connection closed during the TLS handshake"));
      };
      const timer = setTimeout(() => fail(new Error("TLS handshake timed out")), this.socketMs);
      secure.once("error", fail);
      secure.once("close", () => fail());
      secure.once("secure", () => {
        clearTimeout(timer);
        secure.removeAllListeners("error");
        secure.removeAllListeners("close");
        resolve(secure);
      });
    });
  }

  private openSession(smtp: SMTPServer, stream: Socket, peer: string, client: ProxiedClient, proxiedBy: string | null): void {
    const id = Buffer.from(this.options.random(8)).toString("hex");
    this.open.add(id);
    const ip = client?.ip ?? peer;
    this.arriving.set(id, { ip, proxiedBy });
    // Found when a deadline first asks, and kept: smtp-server's set is only searched once.
    let connection: SMTPConnection | undefined;
    const current = (): SMTPConnection | undefined => (connection ??= this.connectionOf(id));
    const deadlines = new InputDeadlines(this.deadlineSettings, {
      inData: () => {
        const parser = current()?._parser;
        return parser ? parser._dataMode : false;
      },
      upgrading: () => current()?._upgrading ?? false,
      expired: (stage) => this.onDeadline(id, stage),
    });
    this.deadlines.set(id, deadlines);
    smtp.connect(stream, { id, remoteAddress: ip, remotePort: client?.port ?? stream.remotePort });
    // connect() has piped the socket into the parser, so the watcher takes no byte from it.
    deadlines.watch(stream);
  }

  private connectionOf(id: string): SMTPConnection | undefined {
    return this.smtpConnections().find((connection) => connection.id === id);
  }

  /** A deadline passed (docs/behaviour.md §4): 421, and smtp-server closes the connection. */
  private onDeadline(id: string, stage: DeadlineStage): void {
    const connection = this.connectionOf(id);
    if (!connection) return;
    const reply = stage === "command" ? LISTENER_REPLIES.commandDeadline : LISTENER_REPLIES.dataDeadline;
    this.emit({ type: "deadline", session: id, ip: this.ipOf(connection.session), stage, reply });
    const { code, message } = splitReply(reply);
    connection.send(code, message);
  }

  /** The client's address in canonical form (smtp-server's own normalisation cuts "::ffff:" off any address). */
  private ipOf(session: SMTPServerSession): string {
    return this.sessions.get(session.id)?.ip ?? this.arriving.get(session.id)?.ip ?? session.remoteAddress;
  }

  private onConnect(session: SMTPServerSession): Error | null {
    const arrived = this.arriving.get(session.id);
    this.arriving.delete(session.id);
    const ip = arrived?.ip ?? session.remoteAddress;
    const proxiedBy = arrived?.proxiedBy ?? null;
    const refuse = (reason: RefusalReason, reply: string, filter?: string | null): Error => {
      this.emit({ type: "refused", session: session.id, ip, reason, reply, ...(filter !== undefined ? { filter } : {}) });
      return replyError(reply);
    };
    if (this.closing) return refuse("shutting-down", LISTENER_REPLIES.shuttingDown);
    const decision = decideIp(this.options.policy.filters(), ip);
    if (decision.decision === "block") return refuse("blocked", REPLIES.accessDenied, decision.filter);
    if (this.sessions.size >= this.maxConnections) return refuse("too-many-connections", LISTENER_REPLIES.tooManyConnections);
    const fromIp = this.perIp.get(ip) ?? 0;
    if (fromIp >= this.maxConnectionsPerIp || (fromIp > 0 && this.sessions.size >= this.sharedConnections)) {
      return refuse("too-many-connections-from-ip", LISTENER_REPLIES.tooManyConnectionsFromIp);
    }
    this.perIp.set(ip, fromIp + 1);
    this.sessions.set(session.id, {
      ip,
      reverseDns: this.resolveReverse ? reverseLookup(this.resolveReverse, ip, this.reverseTimeoutMs) : Promise.resolve(null),
      messages: 0,
    });
    this.emit({
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

  private onClose(session: SMTPServerSession): void {
    this.open.delete(session.id);
    // Left behind by a session refused before onConnect (an early talker).
    this.arriving.delete(session.id);
    this.deadlines.get(session.id)?.stop();
    this.deadlines.delete(session.id);
    this.checkIdle();
    const state = this.sessions.get(session.id);
    if (!state) return;
    this.sessions.delete(session.id);
    const left = (this.perIp.get(state.ip) ?? 1) - 1;
    if (left > 0) this.perIp.set(state.ip, left);
    else this.perIp.delete(state.ip);
    this.emit({ type: "close", session: session.id, ip: state.ip, messages: state.messages });
  }

  private onMailFrom(address: SMTPServerAddress, session: SMTPServerSession): Error | null {
    const base = { type: "mail", session: session.id, ip: this.ipOf(session), mailFrom: address.address } as const;
    if (this.closing) {
      this.emit({ ...base, accepted: false, reply: LISTENER_REPLIES.shuttingDown });
      return replyError(LISTENER_REPLIES.shuttingDown);
    }
    if (needsSmtpUtf8(address.address, address)) {
      this.emit({ ...base, accepted: false, reply: LISTENER_REPLIES.nonAsciiAddress });
      return replyError(LISTENER_REPLIES.nonAsciiAddress);
    }
    this.emit({ ...base, accepted: true });
    return null;
  }

  private onRcptTo(address: SMTPServerAddress, session: SMTPServerSession): Error | null {
    const { policy } = this.options;
    const decide = (recipient: string): RecipientDecision => {
      const refusal = recipientRefusal(recipient, session.envelope.mailFrom);
      if (refusal !== null) return { accepted: false, reply: refusal };
      return decideRecipient(recipient, {
        ruleSet: policy.ruleSet(),
        identities: policy.identities(),
        tls: session.secure,
        acceptedSoFar: session.envelope.rcptTo.length,
        maxRecipients: this.maxRecipients,
      });
    };
    let decision: RecipientDecision;
    if (address.address.toLowerCase() === "postmaster") {
      // RFC 5321 4.5.1, docs/behaviour.md §4: our host's postmaster, else that of the first
      // verified domain whose rules take one. The envelope keeps the address it was routed to.
      const own = `postmaster@${this.options.hostname}`;
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
    const base = { type: "rcpt", session: session.id, ip: this.ipOf(session), recipient: address.address } as const;
    if (decision.accepted) {
      this.emit({ ...base, accepted: true });
      return null;
    }
    this.emit({ ...base, accepted: false, reply: decision.reply });
    return replyError(decision.reply);
  }

  /** The DATA reply: the text after 250, or the error smtp-server turns into the reply. */
  private async onData(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<{ error: Error | null; text?: string }> {
    const started = performance.now();
    this.deadlines.get(session.id)?.dataStarted();
    const state = this.sessions.get(session.id);
    const scanner = new DataScanner(this.maxMessageBytes);
    const fresh = (): string => newMessageId(this.options.random);
    const messageId = this.options.claimMessageId?.(fresh) ?? fresh();
    const receivedAt = this.clock();
    const mailFrom = session.envelope.mailFrom ? session.envelope.mailFrom.address : "";
    // `<postmaster>` and the address it was routed to are one recipient (onRcptTo).
    const recipients = [...new Map(session.envelope.rcptTo.map((rcpt) => [rcpt.address.toLowerCase(), rcpt.address])).values()];
    const helo = session.hostNameAppearsAs;
    // Until the trace headers are known smtp-server's stream buffers, holding the client back.
    const reverseDns = (await state?.reverseDns) ?? null;
    const accepted: AcceptedSession = {
      messageId,
      mailFrom,
      recipients,
      client: { ip: this.ipOf(session), port: session.remotePort, helo, reverseDns, tls: session.secure },
      receivedAt,
      receiptHeaders: traceHeaders({
        mailFrom,
        helo,
        reverseDns,
        ip: this.ipOf(session),
        hostname: this.options.hostname,
        messageId,
        firstRecipient: recipients[0] ?? "",
        receivedAt,
      }),
    };
    const content = checkedContent(stream, scanner);
    const delivery = this.deliver(accepted, content.body);
    this.inFlight.add(delivery);
    const failure = await delivery;
    this.inFlight.delete(delivery);
    // accept() may have settled before the end of DATA (failed, or stopped reading): read the rest.
    content.body.destroy();
    const complete = await content.complete;

    let refusal: DeliveryFailure | null = failure;
    if (!complete) refusal = { reason: "connection-lost", error: undefined };
    else if (scanner.violation) refusal = { reason: scanner.violation, error: undefined };
    const ms = Math.round(performance.now() - started);
    const base = { type: "data", session: session.id, ip: accepted.client.ip, messageId, size: scanner.bytes, ms } as const;
    if (refusal) {
      const reply = DATA_REFUSAL_REPLIES[refusal.reason];
      this.emit({
        ...base,
        accepted: false,
        reason: refusal.reason,
        reply,
        ...(refusal.error !== undefined ? { error: errorText(refusal.error) } : {}),
      });
      return { error: replyError(reply) };
    }
    if (state) state.messages++;
    this.emit({ ...base, accepted: true });
    return { error: null, text: `Ok ${messageId}` };
  }

  /** Hands the message to accept(): null once it is durable and was read to the end, else why not. */
  private async deliver(session: AcceptedSession, body: Readable): Promise<DeliveryFailure | null> {
    try {
      await this.options.accept(session, body);
      // A reader that stopped early may have stored part of a message: that must not get a 250.
      return body.readableEnded ? null : { reason: "accept-failed", error: new Error("accept() resolved before reading the whole message") };
    } catch (error) {
      return { reason: "accept-failed", error };
    }
  }
}
