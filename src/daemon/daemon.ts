import { readFile } from "node:fs/promises";
import { PassThrough } from "node:stream";
import { once } from "node:events";
import { backendFromConfig } from "../actions/compose.js";
import { sesExecutor } from "../actions/ses-executor.js";
import type { ReceiptdConfig } from "../config/config.js";
import { AUTH_DISABLED, authenticateMessage } from "../mail/auth.js";
import type { AuthResult } from "../mail/auth.js";
import { startAdminServer } from "../ops/admin.js";
import type { AdminServer } from "../ops/admin.js";
import type { Logger } from "../ops/log.js";
import { createMetrics } from "../ops/metrics.js";
import type { Metrics } from "../ops/metrics.js";
import { watchPolicy } from "../ops/reload.js";
import type { PolicySnapshot, WatchedPolicy } from "../ops/reload.js";
import type { Header, Identities } from "../rules/model.js";
import { scanVerdict } from "../ses/verdicts.js";
import type { Verdicts } from "../ses/verdicts.js";
import { SmtpListener } from "../smtp/index.js";
import type { AcceptedSession, BoundAddress, SmtpEvent } from "../smtp/index.js";
import { Processor } from "../spool/processor.js";
import { pooledRandomBytes } from "./random.js";
import type { ProcessorEvent } from "../spool/processor.js";
import { Spool } from "../spool/spool.js";

export interface Daemon {
  /** Where SMTP listens (real ports when 0 was configured). */
  addresses(): BoundAddress[];
  /** Where the admin HTTP server listens, or null when it is off. */
  adminAddress(): { host: string; port: number } | null;
  /** Re-reads the rule set and filters (SIGHUP); false when a new file was refused. */
  reload(): Promise<boolean>;
  /** SIGTERM: stop accepting, let sessions and running actions finish within the grace, persist. */
  stop(graceMs?: number): Promise<void>;
}

export interface DaemonOptions {
  logger: Logger;
  /** Injectable for tests; the system's otherwise. */
  clock?: () => Date;
  random?: (bytes: number) => Uint8Array;
}

const HOUR_MS = 60 * 60 * 1000;
const BUSY_LINGER_MS = 20;

/** Metric label for why the listener refused something. */
function refusalReason(reply: string): string {
  if (reply.includes("Relaying denied")) return "relaying_denied";
  if (reply.includes("mailbox unavailable")) return "mailbox_unavailable";
  if (reply.includes("STARTTLS")) return "tls_required";
  if (reply.includes("Too many recipients")) return "too_many_recipients";
  if (reply.startsWith("552")) return "size";
  if (reply.startsWith("421")) return "shutting_down";
  return "other";
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

export async function startDaemon(config: ReceiptdConfig, options: DaemonOptions): Promise<Daemon> {
  const { logger } = options;
  const clock = options.clock ?? (() => new Date());
  const random = options.random ?? pooledRandomBytes;
  const { serve } = config;
  const metrics: Metrics = createMetrics({
    onCollectError: (metric, error) => logger.warn("metrics.collect_failed", { metric, error }),
  });

  const policy: WatchedPolicy = await watchPolicy({
    sources: {
      rules: serve.rules,
      ...(serve.filters ? { filters: serve.filters } : {}),
      ...(serve.identities ? { identities: serve.identities } : {}),
    },
    logger,
    metrics,
  });
  const spool = await Spool.open({ dir: serve.spool.dir });
  metrics.spoolDepth.onScrape((gauge) => gauge.set(spool.depth()));

  // The SMTP side counts as busy while a message is being accepted and shortly after, so that
  // the gaps between one client's transactions do not let processing flood the I/O threads.
  let accepting = 0;
  let lastAccepted = 0;
  const smtpBusy = () => accepting > 0 || performance.now() - lastAccepted < BUSY_LINGER_MS;

  const backend = backendFromConfig(config);
  const processor = new Processor({
    spool,
    executor: sesExecutor({ backend, hostname: config.hostname, strict: config.strict, clock, random }),
    concurrency: serve.processing.concurrency,
    whileBusy: { concurrency: serve.processing.concurrencyWhileReceiving, isBusy: smtpBusy },
    retryWindowMs: serve.processing.retryWindowMinutes * 60_000,
    backoff: { initialMs: serve.processing.backoffInitialMs, maxMs: serve.processing.backoffMaxMs },
    clock,
    sendFailureDsn: (request) => backend.sendDsn(request),
    hostname: config.hostname,
    onEvent: (event) => reportProcessing(event, logger, metrics),
  });

  // One snapshot file per rule set version, not per message.
  const snapshots = new Map<number, Promise<string>>();
  const snapshotHash = (snapshot: PolicySnapshot): Promise<string> => {
    let hash = snapshots.get(snapshot.generation);
    if (!hash) {
      hash = spool.saveSnapshot({ ruleSet: snapshot.ruleSet, identities: identityLists(snapshot.identities) });
      hash.catch(() => snapshots.delete(snapshot.generation));
      snapshots.set(snapshot.generation, hash);
    }
    return hash;
  };

  const authenticate = serve.authentication.enabled
    ? (session: AcceptedSession) => (stream: AsyncIterable<Buffer>) =>
        authenticateMessage(
          { message: stream, ip: session.client.ip, helo: session.client.helo, mailFrom: session.mailFrom, hostname: config.hostname },
          { timeoutMs: serve.authentication.dnsTimeoutMs },
        )
    : null;

  const accept = async (session: AcceptedSession, body: AsyncIterable<Buffer>): Promise<void> => {
    accepting++;
    try {
      await store(session, body);
    } finally {
      accepting--;
      lastAccepted = performance.now();
    }
  };

  const store = async (session: AcceptedSession, body: AsyncIterable<Buffer>): Promise<void> => {
    const started = performance.now();
    const snapshot = policy.snapshot();
    const scanned = scanVerdict(snapshot.ruleSet, snapshot.identities, session.recipients);
    const scanHeaders: Header[] =
      scanned === "DISABLED"
        ? []
        : [
            { name: "X-SES-Spam-Verdict", value: scanned },
            { name: "X-SES-Virus-Verdict", value: scanned },
          ];
    const base: Verdicts = { spam: scanned, virus: scanned, ...AUTH_DISABLED.verdicts };
    const state = {
      messageId: session.messageId,
      receivedAt: session.receivedAt.toISOString(),
      envelope: { mailFrom: session.mailFrom, recipients: session.recipients },
      client: { ip: session.client.ip, helo: session.client.helo, reverseDns: session.client.reverseDns, tls: session.client.tls },
      verdicts: base,
      snapshot: await snapshotHash(snapshot),
      receiptHeaders: [...session.receiptHeaders, ...scanHeaders],
    };
    if (!authenticate) {
      // Everything is known up front, so the state is written while the body streams in.
      await spool.accept(state, body);
    } else {
      const tee = teeForAuthentication(body, authenticate(session));
      await spool.accept(state, tee.body, {
        completeState: async () => {
          const auth = await tee.result;
          return {
            verdicts: { ...base, ...auth.verdicts },
            receiptHeaders: [...session.receiptHeaders, ...auth.headers, ...scanHeaders],
          };
        },
      });
    }
    metrics.smtpAcceptSeconds.observe((performance.now() - started) / 1000);
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
    timeouts: { socketMs: serve.smtp.socketTimeoutMs, closeMs: config.serve.shutdownGraceMs },
    maxMessageBytes: serve.smtp.maxMessageBytes,
    maxRecipients: serve.smtp.maxRecipients,
    earlyTalkerCheckMs: serve.smtp.earlyTalkerCheckMs,
    reverseDns: serve.smtp.reverseDns,
    policy,
    random,
    claimMessageId: (fresh) => spool.claimMessageId(fresh),
    clock,
    accept,
    onEvent: (event) => {
      reportSmtp(event, logger, metrics);
      // Rule actions run after the 250, never before it (SEMANTICS 4): the reply is on its way
      // once this event is out, and processing starts on a later turn of the event loop.
      if (event.type === "data" && event.accepted) setImmediate(() => processor.enqueue(event.messageId));
    },
  });
  await processor.start();

  const sweep = async () => {
    try {
      const removed = await spool.sweep(clock(), serve.spool.retentionHours * HOUR_MS);
      if (removed > 0) logger.info("spool.swept", { removed });
    } catch (error) {
      logger.error("spool.sweep_failed", { error });
    }
  };
  const sweeper = setInterval(() => void sweep(), HOUR_MS);
  sweeper.unref();
  void sweep();

  let stopping = false;
  const admin: AdminServer | null = serve.admin
    ? await startAdminServer({
        host: serve.admin.host,
        port: serve.admin.port,
        metrics,
        logger,
        ready: () => (stopping ? { ready: false, reason: "shutting down" } : { ready: true }),
      })
    : null;

  logger.info("daemon.started", {
    smtp: listener.addresses().map((a) => `${a.host}:${a.port}${a.implicitTls ? " (TLS)" : ""}`),
    admin: admin ? `${admin.address().host}:${admin.address().port}` : null,
    ruleSet: policy.ruleSet().name,
    spool: serve.spool.dir,
    pending: spool.depth(),
  });

  return {
    addresses: () => listener.addresses(),
    adminAddress: () => admin?.address() ?? null,
    reload: () => policy.reload(),
    async stop(graceMs = serve.shutdownGraceMs) {
      if (stopping) return;
      stopping = true;
      const deadline = Date.now() + graceMs;
      logger.info("daemon.stopping", { graceMs });
      clearInterval(sweeper);
      await listener.close(graceMs);
      await processor.drain(Math.max(0, deadline - Date.now()));
      await spool.close();
      policy.close();
      await admin?.close();
      logger.info("daemon.stopped", { pending: spool.depth() });
    },
  };
}

function identityLists(identities: Identities): { addresses: string[]; domains: string[] } {
  return { addresses: [...identities.addresses], domains: [...identities.domains] };
}

function reportSmtp(event: SmtpEvent, logger: Logger, metrics: Metrics): void {
  switch (event.type) {
    case "connect":
      metrics.smtpConnections.inc();
      metrics.smtpConnectionsOpen.inc();
      logger.debug("smtp.connect", event);
      return;
    case "close":
      metrics.smtpConnectionsOpen.dec();
      logger.debug("smtp.close", event);
      return;
    case "refused":
      metrics.smtpRefused.inc({ stage: "connect", reason: event.reason === "blocked" ? "ip_filter" : event.reason.replaceAll("-", "_") });
      logger.info("smtp.refused", event);
      return;
    case "mail":
      if (!event.accepted) metrics.smtpRefused.inc({ stage: "mail", reason: refusalReason(event.reply) });
      logger.debug("smtp.mail", event);
      return;
    case "rcpt":
      if (!event.accepted) {
        metrics.smtpRefused.inc({ stage: "rcpt", reason: refusalReason(event.reply) });
        logger.info("smtp.rcpt_refused", event);
      }
      return;
    case "data":
      if (event.accepted) {
        metrics.smtpMessagesAccepted.inc();
        logger.info("smtp.accepted", event);
      } else {
        metrics.smtpRefused.inc({ stage: "data", reason: event.reason.replaceAll("-", "_") });
        logger.warn("smtp.data_refused", event);
      }
      return;
    case "tls":
      logger.debug("smtp.tls", event);
      return;
    case "error":
      logger.warn("smtp.error", event);
      return;
  }
}

function reportProcessing(event: ProcessorEvent, logger: Logger, metrics: Metrics): void {
  const { event: name, ...fields } = event;
  switch (event.event) {
    case "action-done":
      metrics.actions.inc({ type: event.action, outcome: "done" });
      metrics.actionSeconds.observe({ type: event.action }, event.durationMs / 1000);
      logger.debug(`processing.${name}`, fields);
      return;
    case "action-failed":
      metrics.actions.inc({ type: event.action, outcome: event.failure === "transient" ? "retry" : "failed" });
      metrics.actionSeconds.observe({ type: event.action }, event.durationMs / 1000);
      logger.warn(`processing.${name}`, fields);
      return;
    case "message-dead-lettered":
      metrics.messagesDeadLettered.inc();
      logger.error(`processing.${name}`, fields);
      return;
    case "message-missing":
      logger.warn(`processing.${name}`, fields);
      return;
    case "spool-error":
    case "dsn-failed":
      logger.error(`processing.${name}`, fields);
      return;
    case "message-started":
      logger.debug(`processing.${name}`, fields);
      return;
    default:
      logger.info(`processing.${name}`, fields);
  }
}

