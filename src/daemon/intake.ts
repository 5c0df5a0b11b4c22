import { readFile } from "node:fs/promises";
import { once } from "node:events";
import { PassThrough } from "node:stream";
import type { ReceiptdConfig } from "../config/config.js";
import { AUTH_DISABLED, authenticateMessage } from "../mail/auth.js";
import type { AuthResult } from "../mail/auth.js";
import { AuthPool } from "../mail/auth-pool.js";
import type { LivePolicy, PolicyVersion } from "../ops/reload.js";
import { storedMessage } from "../mail/stored.js";
import type { Identities, RuleSet } from "../rules/model.js";
import { scanVerdict } from "../ses/verdicts.js";
import type { Verdicts } from "../ses/verdicts.js";
import { SmtpListener } from "../smtp/index.js";
import type { AcceptedSession, SmtpEvent } from "../smtp/index.js";
import type { SpoolWriter } from "../spool/spool-writer.js";

/** How long after a message the SMTP side still counts as busy (see `Intake.busy`). */
const BUSY_LINGER_MS = 20;

/** `Intake.busy` from its parts, for the daemon's view of an acceptor process too. */
export function receiving(accepting: number, lastActive: number, now = performance.now()): boolean {
  return accepting > 0 || now - lastActive < BUSY_LINGER_MS;
}

export interface IntakeOptions {
  policy: LivePolicy;
  /** Where accepted messages go. */
  spool: SpoolWriter;
  clock: () => Date;
  random: (bytes: number) => Uint8Array;
  onEvent: (event: SmtpEvent) => void;
  /** Time from DATA's end to the message being durable, for the acceptance latency histogram. */
  onAccepted: (seconds: number) => void;
  /** Each message's authentication, once its verdicts are known (not called when authentication is off). */
  onAuthenticated: (report: AuthReport) => void;
}

export interface AuthReport {
  messageId: string;
  /** From the first bytes of the body to the verdicts: the body's transfer is included. */
  durationMs: number;
  verdicts: Pick<Verdicts, "spf" | "dkim" | "dmarc">;
  /** The DNS budget ran out with a query unanswered. */
  dnsTimedOut: boolean;
  budgetMs: number;
}

export interface Intake {
  listener: SmtpListener;
  /**
   * True while a message is being accepted and shortly after, so that the gaps between one
   * client's transactions do not let processing flood the disk and the I/O threads.
   */
  busy(): boolean;
  /** Messages being accepted right now. */
  accepting(): number;
  /** Stops the listener (open sessions get `graceMs`), then the authentication workers. */
  close(graceMs: number): Promise<void>;
}

/**
 * Feeds the body to authentication while it streams to the spool, so that DKIM body hashes are
 * computed in the same pass and the message is never held in memory.
 */
function teeForAuthentication(
  body: AsyncIterable<Buffer>,
  authenticate: (stream: AsyncIterable<Buffer>) => Promise<AuthResult>,
): { body: AsyncIterable<Buffer>; result: Promise<AuthResult> } {
  const copy = new PassThrough();
  const result = authenticate(copy);
  async function* passOn(): AsyncGenerator<Buffer> {
    let ended = false;
    try {
      for await (const chunk of body) {
        if (!copy.write(chunk)) await once(copy, "drain");
        yield chunk;
      }
      copy.end();
      ended = true;
    } finally {
      // A refused or abandoned body must not leave authentication waiting for the rest.
      if (!ended) copy.destroy();
    }
  }
  return { body: passOn(), result };
}

/**
 * The body as it is, noting when it ended: the final dot, where the acceptance latency starts
 * (a client that pauses mid-body is not the daemon being slow).
 */
function notingEnd(body: AsyncIterable<Buffer>): { body: AsyncIterable<Buffer>; endedAt: () => number | undefined } {
  let endedAt: number | undefined;
  async function* passOn(): AsyncGenerator<Buffer> {
    yield* body;
    endedAt = performance.now();
  }
  return { body: passOn(), endedAt: () => endedAt };
}

export function identityLists(identities: Identities): { addresses: string[]; domains: string[] } {
  return { addresses: [...identities.addresses], domains: [...identities.domains] };
}

/**
 * The SMTP side of the daemon: the listener, and each message's way into the spool with the
 * state it will be processed under. It runs in the daemon's own process, or in each acceptor
 * process when `smtp.processes` is more than 1; processing is not its business.
 */
export async function startIntake(config: ReceiptdConfig, options: IntakeOptions): Promise<Intake> {
  const { policy, spool, onAccepted, onAuthenticated } = options;
  const { serve } = config;

  let accepting = 0;
  let lastAccepted = 0;

  // One snapshot file per rule set version, not per message.
  const snapshots = new Map<number, Promise<string>>();
  const snapshotHash = (version: PolicyVersion): Promise<string> => {
    let hash = snapshots.get(version.generation);
    if (!hash) {
      hash = spool.saveSnapshot({ ruleSet: version.ruleSet as RuleSet, identities: identityLists(version.identities) });
      hash.catch(() => snapshots.delete(version.generation));
      snapshots.set(version.generation, hash);
    }
    return hash;
  };

  // Off this thread: mailauth's parsing of a hostile header block would stall every client.
  const pool = serve.authentication.enabled ? new AuthPool({ size: serve.authentication.workers }) : null;
  const authenticate = pool
    ? (session: AcceptedSession) => async (stream: AsyncIterable<Buffer>) => {
        const started = performance.now();
        let dnsTimedOut = false;
        const result = await authenticateMessage(
          { message: stream, ip: session.client.ip, helo: session.client.helo, mailFrom: session.mailFrom, hostname: config.hostname },
          { timeoutMs: serve.authentication.dnsTimeoutMs, pool, onDnsTimeout: () => (dnsTimedOut = true) },
        );
        const { spf, dkim, dmarc } = result.verdicts;
        onAuthenticated({
          messageId: session.messageId,
          durationMs: Math.round(performance.now() - started),
          verdicts: { spf, dkim, dmarc },
          dnsTimedOut,
          budgetMs: serve.authentication.dnsTimeoutMs,
        });
        return result;
      }
    : null;

  const spoolMessage = async (session: AcceptedSession, received: AsyncIterable<Buffer>): Promise<void> => {
    const { body, endedAt } = notingEnd(received);
    const version = policy.version();
    // Recipients were accepted under a set that has since been deactivated: 451, the client retries and is told at RCPT.
    const ruleSet = version.ruleSet;
    if (!ruleSet) throw new Error("no rule set is active since the recipients were accepted");
    const scanned = scanVerdict(ruleSet, version.identities, session.recipients);
    const base: Verdicts = { spam: scanned, virus: scanned, ...AUTH_DISABLED.verdicts };
    const envelope = { mailFrom: session.mailFrom, recipients: session.recipients };
    const receipt = { messageId: session.messageId, receivedAt: session.receivedAt, client: session.client, hostname: config.hostname, scan: scanned };
    const state = {
      messageId: session.messageId,
      receivedAt: session.receivedAt.toISOString(),
      envelope,
      client: { ip: session.client.ip, helo: session.client.helo, reverseDns: session.client.reverseDns, tls: session.client.tls },
      verdicts: base,
      snapshot: await snapshotHash(version),
    };
    if (!authenticate) {
      // Everything is known up front, so the state is written while the body streams in.
      const stored = storedMessage(envelope, body, { ...receipt, auth: AUTH_DISABLED });
      await spool.store({ ...state, receiptHeaders: await stored.headers }, stored.body);
    } else {
      // Authentication reads the message as the client sent it, before it is made the stored one.
      const tee = teeForAuthentication(body, authenticate(session));
      const stored = storedMessage(envelope, tee.body, { ...receipt, auth: tee.result });
      await spool.store(state, stored.body, {
        completeState: async () => ({
          verdicts: { ...base, ...(await tee.result).verdicts },
          receiptHeaders: await stored.headers,
        }),
      });
    }
    const now = performance.now();
    onAccepted((now - (endedAt() ?? now)) / 1000);
  };

  const accept = async (session: AcceptedSession, body: AsyncIterable<Buffer>): Promise<void> => {
    accepting++;
    try {
      await spoolMessage(session, body);
    } finally {
      accepting--;
      lastAccepted = performance.now();
    }
  };

  const tls = serve.smtp.tls
    ? { cert: await readFile(serve.smtp.tls.cert), key: await readFile(serve.smtp.tls.key) }
    : undefined;
  const listener = await SmtpListener.start({
    listen: serve.smtp.listen,
    hostname: config.hostname,
    ...(serve.smtp.banner ? { banner: serve.smtp.banner } : {}),
    ...(tls ? { tls } : {}),
    proxyProtocolFrom: serve.smtp.proxyProtocolFrom,
    maxConnections: serve.smtp.maxConnections,
    maxConnectionsPerIp: serve.smtp.maxConnectionsPerIp,
    timeouts: {
      socketMs: serve.smtp.socketTimeoutMs,
      commandMs: serve.smtp.commandDeadlineMs,
      dataMs: serve.smtp.dataDeadlineMs,
      minDataBytesPerSecond: serve.smtp.minDataBytesPerSecond,
      closeMs: serve.shutdownGraceMs,
    },
    maxMessageBytes: serve.smtp.maxMessageBytes,
    maxRecipients: serve.smtp.maxRecipients,
    earlyTalkerCheckMs: serve.smtp.earlyTalkerCheckMs,
    reverseDns: serve.smtp.reverseDns,
    policy,
    random: options.random,
    claimMessageId: (newId) => spool.claimMessageId(newId),
    clock: options.clock,
    accept,
    onEvent: options.onEvent,
  });

  return {
    listener,
    busy: () => receiving(accepting, lastAccepted),
    accepting: () => accepting,
    async close(graceMs) {
      await listener.close(graceMs);
      await pool?.close();
    },
  };
}
