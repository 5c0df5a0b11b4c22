import net from "node:net";
import type { AddressInfo, Server, Socket } from "node:net";
import { SMTPServer } from "smtp-server";
import type { SMTPServerOptions, SMTPServerSession } from "smtp-server";
import type { SMTPConnection } from "smtp-server/lib/smtp-connection.js";
import { DEFAULTS } from "../config/defaults.js";
import { DEFAULT_MAX_RECIPIENTS, REPLIES } from "../rules/recipient-policy.js";
import { compileFilters } from "../rules/filters.js";
import { Admission } from "./admission.js";
import type { ListenerPolicy } from "./admission.js";
import { receiveMessage } from "./data.js";
import type { AcceptedSession, DataSettings } from "./data.js";
import { InputDeadlines } from "./deadlines.js";
import type { DeadlineStage, InputDeadlineSettings } from "./deadlines.js";
import { errorText } from "../ops/log.js";
import type { SmtpEvent } from "./events.js";
import { tweakServer } from "./patches.js";
import { PreSession } from "./pre-session.js";
import type { ProxiedClient } from "./proxy.js";
import { LISTENER_REPLIES, replyError, splitReply } from "./replies.js";
import { DEFAULT_REVERSE_DNS_TIMEOUT_MS, reverseLookup, systemReverseResolver } from "./reverse-dns.js";
import type { ReverseResolver } from "./reverse-dns.js";

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
  /** Default 40 MB (docs/behaviour.md §4). */
  maxMessageBytes?: number;
  /** Default 100 (docs/behaviour.md §4). */
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
  claimMessageId?: (newId: () => string) => string;
  clock?: () => Date;
  /**
   * Gets the message as the client sent it, bare LF normalised, smuggling-checked and
   * size-enforced (the docs/behaviour.md §5 headers are the caller's to make). Must resolve only
   * once the message is durable; `250` is answered then. A rejection answers `451 4.3.0` and
   * nothing is accepted.
   */
  accept: (session: AcceptedSession, body: AsyncIterable<Buffer>) => Promise<void>;
  onEvent?: (event: SmtpEvent) => void;
}

export const DEFAULT_MAX_MESSAGE_BYTES = DEFAULTS.smtp.maxMessageBytes;
const DEFAULT_MAX_CONNECTIONS = DEFAULTS.smtp.maxConnections;
// Postfix's smtpd_client_connection_count_limit.
const DEFAULT_MAX_CONNECTIONS_PER_IP = DEFAULTS.smtp.maxConnectionsPerIp;
const DEFAULT_SOCKET_TIMEOUT_MS = DEFAULTS.smtp.socketTimeoutMs;
const DEFAULT_CLOSE_GRACE_MS = DEFAULTS.shutdownGraceMs;

/**
 * The SMTP listener on smtp-server: before the session `PreSession` (pre-session.ts), who gets
 * in and the MAIL/RCPT answers `Admission` (admission.ts), DATA `receiveMessage` (data.ts);
 * here the servers, the wiring between them and start/stop.
 */
export class SmtpListener {
  private readonly servers: Server[] = [];
  private readonly bound: BoundAddress[] = [];
  private readonly smtpPlain: SMTPServer;
  private smtpImplicit: SMTPServer | undefined;
  private readonly maxMessageBytes: number;
  private readonly socketMs: number;
  private readonly deadlineSettings: InputDeadlineSettings;
  private readonly preSession: PreSession;
  private readonly admission: Admission;
  private readonly data: DataSettings;
  /**
   * SMTP sessions from connect() to smtp-server's onClose, which comes for every one of them
   * (a socket's own 'close' listeners do not survive STARTTLS: smtp-server removes them all).
   */
  private readonly open = new Set<string>();
  /** The client's canonical address and, when proxied, its load balancer, by session ID, for onConnect. */
  private readonly arriving = new Map<string, { ip: string; proxiedBy: string | null }>();
  private readonly deadlines = new Map<string, InputDeadlines>();
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
    const maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    this.socketMs = options.timeouts?.socketMs ?? DEFAULT_SOCKET_TIMEOUT_MS;
    this.deadlineSettings = {
      commandMs: options.timeouts?.commandMs ?? DEFAULTS.smtp.commandDeadlineMs,
      dataMs: options.timeouts?.dataMs ?? DEFAULTS.smtp.dataDeadlineMs,
      minDataBytesPerSecond: options.timeouts?.minDataBytesPerSecond ?? DEFAULTS.smtp.minDataBytesPerSecond,
    };
    const emit = (event: SmtpEvent): void => this.emit(event);
    this.preSession = new PreSession({
      proxyFrom: options.proxyProtocolFrom?.length
        ? compileFilters(options.proxyProtocolFrom.map((cidr, i) => ({ name: `proxy-${i}`, policy: "Allow", cidr })))
        : null,
      socketMs: this.socketMs,
      maxPending: maxConnections,
      // The context smtp-server built from the tls option, the one STARTTLS uses too.
      secureContext: () => this.smtp(true).secureContext.get("*"),
      emit,
      onDropped: () => this.checkIdle(),
    });
    const reverse = options.reverseDns ?? true;
    const reverseOptions = typeof reverse === "object" ? reverse : {};
    const reverseTimeoutMs = reverseOptions.timeoutMs ?? DEFAULT_REVERSE_DNS_TIMEOUT_MS;
    const resolveReverse = reverse === false ? null : (reverseOptions.resolve ?? systemReverseResolver(reverseTimeoutMs));
    this.admission = new Admission({
      hostname: options.hostname,
      policy: options.policy,
      maxConnections,
      maxConnectionsPerIp: options.maxConnectionsPerIp ?? DEFAULT_MAX_CONNECTIONS_PER_IP,
      maxRecipients: options.maxRecipients ?? DEFAULT_MAX_RECIPIENTS,
      reverseDns: (ip) => (resolveReverse ? reverseLookup(resolveReverse, ip, reverseTimeoutMs) : Promise.resolve(null)),
      emit,
    });
    this.data = {
      maxMessageBytes: this.maxMessageBytes,
      random: options.random,
      ...(options.claimMessageId ? { claimMessageId: options.claimMessageId } : {}),
      clock: options.clock ?? (() => new Date()),
      accept: options.accept,
      emit,
      inFlight: this.inFlight,
    };
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
    this.preSession.destroyAll();
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
      onMailFrom: (address, session, callback) =>
        callback(this.admission.mailFrom(address, session, this.ipOf(session), this.closing !== null)),
      onRcptTo: (address, session, callback) => callback(this.admission.rcptTo(address, session, this.ipOf(session))),
      onData: (stream, session, callback) => {
        this.deadlines.get(session.id)?.dataStarted();
        receiveMessage(stream, session, this.ipOf(session), this.admission.session(session.id), this.data).then(
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
          reason: "size",
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
      const server = net.createServer((socket) =>
        this.preSession.enter(socket, local.implicitTls, (stream, peer, client, proxiedBy) =>
          this.openSession(smtp, stream, peer, client, proxiedBy),
        ),
      );
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
    return this.admission.session(session.id)?.ip ?? this.arriving.get(session.id)?.ip ?? session.remoteAddress;
  }

  private onConnect(session: SMTPServerSession): Error | null {
    const arrived = this.arriving.get(session.id);
    this.arriving.delete(session.id);
    return this.admission.connect(session, arrived?.ip ?? session.remoteAddress, arrived?.proxiedBy ?? null, this.closing !== null);
  }

  private onClose(session: SMTPServerSession): void {
    this.open.delete(session.id);
    // Left behind by a session refused before onConnect (an early talker).
    this.arriving.delete(session.id);
    this.deadlines.get(session.id)?.stop();
    this.deadlines.delete(session.id);
    this.checkIdle();
    this.admission.close(session);
  }
}
