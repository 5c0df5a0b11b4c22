import { ActionError } from "../actions/backend.js";
import { backendFromConfig } from "../actions/compose.js";
import { removeLeftoverTemporaries } from "../actions/local/leftovers.js";
import { sesExecutor } from "../actions/ses-executor.js";
import { adminPublicUrl, listenerUrl } from "../config/config.js";
import { DEFAULTS } from "../config/defaults.js";
import type { ReceiptdConfig } from "../config/config.js";
import { startAdminServer } from "../ops/admin.js";
import type { AdminServer } from "../ops/admin.js";
import type { Logger } from "../ops/log.js";
import { createMetrics } from "../ops/metrics.js";
import type { Metrics, SmtpRefusalReason } from "../ops/metrics.js";
import type { LivePolicy, PolicyTexts } from "../ops/reload.js";
import { startApiServer } from "../api/server.js";
import { OPERATIONS } from "../api/operations/index.js";
import { openFileStore } from "../store/file-store.js";
import { confirmationLink } from "../api/confirm.js";
import { confirmationMessage } from "../mail/confirmation.js";
import { spoolBounceService } from "./bounce-service.js";
import { startVerifier, systemDns } from "./verifier.js";
import { requeueDeadLetters } from "./requeue.js";
import { scanMessages, scannersOf, watchScanners } from "./scanning.js";
import { startReceiving } from "./receiving.js";
import type { BoundAddress, ListenerRefusalReason, SmtpEvent } from "../smtp/index.js";
import { Processor } from "../spool/processor.js";
import type { ProcessorEvent } from "../spool/processor.js";
import { Spool } from "../spool/spool.js";
import { startIntake } from "./intake.js";
import type { AuthReport } from "./intake.js";
import { AcceptorPool } from "./acceptors.js";
import { preflight } from "./preflight.js";
import { pooledRandomBytes } from "./random.js";

export interface Daemon {
  /** Where SMTP listens (real ports when 0 was configured). */
  addresses(): BoundAddress[];
  /** Where the SES API listens, or null when it is off. */
  apiAddress(): { host: string; port: number } | null;
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
  /** From how long an action attempt is logged as slow; DEFAULTS.slowActionMs otherwise. */
  slowActionMs?: number;
}

const HOUR_MS = 60 * 60 * 1000;
/** How often configured scanners are pinged for /readyz. */
const SCANNER_PING_MS = 10_000;

/** One DNS lookup of verification; a slower server counts as a failure (TemporaryFailure). */
const DNS_TIMEOUT_MS = 5_000;

/** Why a DSN does not leave while UpdateAccountSendingEnabled has paused the account. */
const SENDING_PAUSED = "account sending is paused (UpdateAccountSendingEnabled)";

/** The metric label of each reason the listener gives for a refusal (the labels: SmtpRefusalReason). */
const REFUSAL_LABELS: Record<ListenerRefusalReason, SmtpRefusalReason> = {
  blocked: "ip_filter",
  "too-many-connections": "too_many_connections",
  "too-many-connections-from-ip": "too_many_connections_from_ip",
  "too-many-pending": "too_many_pending",
  "shutting-down": "shutting_down",
  "proxy-header-invalid": "proxy_header_invalid",
  "proxy-header-not-allowed": "proxy_header_not_allowed",
  "tls-handshake-failed": "tls_handshake_failed",
  "smtputf8-required": "smtputf8_required",
  "invalid-utf8": "invalid_utf8",
  "relaying-denied": "relaying_denied",
  "mailbox-unavailable": "mailbox_unavailable",
  "tls-required": "tls_required",
  "too-many-recipients": "too_many_recipients",
  "unstorable-local-part": "unstorable_local_part",
  size: "size",
  smuggling: "smuggling",
  "header-limit": "header_limit",
  "accept-failed": "accept_failed",
  "connection-lost": "connection_lost",
};

export async function startDaemon(config: ReceiptdConfig, options: DaemonOptions): Promise<Daemon> {
  // First of all: a second daemon on the same directory must refuse before it touches the spool.
  const spool = await Spool.lock({ dir: config.serve.spool.dir });
  // What has been started, to be stopped again (last first) should a later step fail.
  const started: (() => unknown)[] = [];
  try {
    return await startOnSpool(config, options, spool, (stop) => started.push(stop));
  } catch (error) {
    for (const stop of started.reverse()) await Promise.resolve(stop()).catch(() => undefined);
    await spool.close();
    throw error;
  }
}

/**
 * The listeners are bound before the spool is recovered, so that a daemon that cannot bind
 * leaves the spool as it found it; what an earlier run left is processed once it is in order.
 * Messages accepted meanwhile are new files, which recovery never touches (src/spool/recovery.ts).
 */
async function startOnSpool(
  config: ReceiptdConfig,
  options: DaemonOptions,
  spool: Spool,
  onStarted: (stop: () => unknown) => void,
): Promise<Daemon> {
  const { logger } = options;
  const clock = options.clock ?? (() => new Date());
  const random = options.random ?? pooledRandomBytes;
  const { serve } = config;
  await preflight(config);
  const metrics: Metrics = createMetrics({
    onCollectError: (metric, error) => logger.warn("metrics.collect_failed", { metric, error }),
  });

  // The SMTP side, in this process or in acceptor processes; set once it listens.
  let smtp: SmtpSide | null = null;

  const store = await openFileStore({ dir: serve.state.dir, clock });
  onStarted(() => store.close());
  const scope = { account: serve.state.account, region: serve.state.region };
  const receiving = await startReceiving(config, {
    store,
    scope,
    logger,
    metrics,
    clock,
    // Acceptor processes, if any, follow every change; without them no texts are made.
    ...(serve.smtp.processes > 1 ? { onChange: (texts: PolicyTexts) => smtp?.policyChanged?.(texts) } : {}),
  });
  onStarted(() => receiving.close());
  const policy = receiving.policy;
  // Sending pause (docs/behaviour.md §8): read at each DSN, so that the pause holds from the call's response on.
  let sendingEnabled = (await store.read(scope)).sendingEnabled;
  const unsubscribe = store.subscribe((changed, state) => {
    if (changed.account === scope.account && changed.region === scope.region) sendingEnabled = state.sendingEnabled;
  });
  onStarted(unsubscribe);
  const dsnHeld = () => (sendingEnabled ? null : SENDING_PAUSED);
  metrics.spoolDepth.onScrape((gauge) => gauge.set(spool.queue.depth()));

  // Set once the admin port listens, which is before processing starts.
  let admin: AdminServer | null = null;
  // A failure after its action succeeded (an Event handler, an SNS subscriber) is logged and counted.
  const backend = backendFromConfig(config, {
    onBackgroundFailure: (failure) => {
      metrics.actionBackgroundFailures.inc({ type: failure.kind === "lambda-event" ? "Lambda" : "SNS" });
      logger.warn("actions.background_failed", { ...failure });
    },
    snsPublicUrl: () => adminPublicUrl(config, admin?.address().port),
  });
  // A crash mid-write leaves temp files in the local back end's directories; no action runs yet.
  // Housekeeping only: a directory that cannot be read is the action's to report, not start-up's.
  await removeLeftoverTemporaries(config.dataDir).then(
    (removed) => removed.length > 0 && logger.info("actions.temporaries_removed", { files: removed.length }),
    (error: unknown) => logger.warn("actions.temporaries_not_removed", { error }),
  );
  const scanners = scannersOf(config);
  const scannerWatch = scanners.length > 0 ? watchScanners(scanners, { intervalMs: SCANNER_PING_MS, timeoutMs: serve.scanning.timeoutMs, logger }) : null;
  onStarted(() => scannerWatch?.close());
  const processor = new Processor({
    spool: spool.queue,
    executor: sesExecutor({ backend, hostname: config.hostname, strict: config.strict, clock, random, dsnHeld }),
    concurrency: serve.processing.concurrency,
    whileBusy: { concurrency: serve.processing.concurrencyWhileReceiving, isBusy: () => smtp?.busy() ?? false },
    retryWindowMs: serve.processing.retryWindowMinutes * 60_000,
    backoff: { initialMs: serve.processing.backoffInitialMs, maxMs: serve.processing.backoffMaxMs },
    clock,
    // Paused between the dead letter and a retry of its DSN: given up, as a refusal for good is.
    sendFailureDsn: (request) => {
      if (!sendingEnabled) throw new ActionError("permanent", SENDING_PAUSED);
      return backend.sendDsn(request);
    },
    dsnHeld,
    ...(scanners.length > 0 ? { scan: scanMessages(scanners, { timeoutMs: serve.scanning.timeoutMs, metrics, logger }) } : {}),
    hostname: config.hostname,
    onEvent: (event) => reportProcessing(event, logger, metrics, options.slowActionMs ?? DEFAULTS.slowActionMs),
  });

  let started = false;
  let stopping = false;
  // Before processing, so that the certificate and unsubscribe URLs in signed SNS envelopes work.
  admin = serve.admin
    ? await startAdminServer({
        host: serve.admin.host,
        port: serve.admin.port,
        metrics,
        logger,
        ready: () => {
          if (stopping) return { ready: false, reason: "shutting down" };
          if (!started) return { ready: false, reason: "starting" };
          const scanning = scannerWatch?.problem() ?? null;
          return scanning === null ? { ready: true } : { ready: false, reason: scanning };
        },
        ...(config.backends.SNS === "local" ? { sns: backend.localSns } : {}),
        // Not before recovery has put the spool in order and processing has started.
        requeue: async (request) =>
          started && !stopping
            ? requeueDeadLetters(request, { spool, spoolDir: serve.spool.dir, processor, policy, logger, metrics })
            : { requeued: [], refused: (request.ids ?? []).map((id) => ({ id, reason: stopping ? "the daemon is stopping" : "the daemon is starting" })) },
        ...(serve.admin.token === undefined ? {} : { token: serve.admin.token }),
      })
    : null;
  const adminServer = admin;
  onStarted(() => adminServer?.close());

  smtp =
    serve.smtp.processes === 1
      ? await acceptInProcess(config, { policy, spool, processor, logger, metrics, clock, random })
      : await acceptInProcesses(config, { texts: () => receiving.texts(), spool, processor, logger, metrics });
  // Links in confirmation emails point where the API is reached: api.url, or the bound address.
  let apiBase: string | null = null;
  const api = serve.api
    ? await startApiServer({
        api: serve.api,
        operations: OPERATIONS,
        store,
        services: {
          verification: serve.state.verification,
          fileOwned: receiving.fileOwned,
          targetExists: (target) => backend.targetExists(target),
          confirmation: {
            async send(scope, address, token) {
              if (apiBase === null) throw new Error("the API is not listening yet");
              const raw = await confirmationMessage({
                from: `no-reply@${config.hostname}`,
                to: address,
                region: scope.region,
                link: confirmationLink(apiBase, scope, address, token),
                date: clock(),
                messageId: `<${Buffer.from(random(16)).toString("hex")}@${config.hostname}>`,
              });
              await backend.sendDsn({ to: address, raw });
            },
          },
          onError: (event, fields) => logger.error(event, fields),
          bounce: spoolBounceService({ spoolDir: serve.spool.dir, scope, hostname: config.hostname, send: (request) => backend.sendDsn(request) }),
        },
        logger,
        metrics,
        clock,
      })
    : null;
  onStarted(() => api?.close());
  if (api) apiBase = serve.api?.url ?? listenerUrl(api.address().host, api.address().port, config.hostname);
  const verifier =
    serve.state.verification === "dns"
      ? startVerifier({
          store,
          dns: systemDns(serve.state.dnsServers, DNS_TIMEOUT_MS),
          hostname: config.hostname,
          intervalMs: serve.state.verificationIntervalMs,
          timeoutHours: serve.state.verificationTimeoutHours,
          clock,
          logger,
        })
      : null;
  onStarted(() => verifier?.close());
  void verifier?.checkNow().catch((error: unknown) => logger.error("state.verification_failed", { error }));
  const listening = smtp;
  onStarted(() => listening.close(0));
  await spool.recover();
  await processor.start();
  onStarted(() => processor.drain(0));
  started = true;

  const sweep = async () => {
    try {
      const removed = await spool.queue.sweep(clock(), serve.spool.retentionHours * HOUR_MS);
      if (removed > 0) logger.info("spool.swept", { removed });
    } catch (error) {
      logger.error("spool.sweep_failed", { error });
    }
  };
  const sweeper = setInterval(() => void sweep(), HOUR_MS);
  sweeper.unref();
  onStarted(() => clearInterval(sweeper));
  void sweep();

  // Once at start: which engines give the verdicts, and which rules want them.
  logger.info("scanning.configured", {
    engines: scanners.map((scanner) => scanner.engine),
    rules: policy.ruleSet()?.rules.filter((rule) => rule.enabled && rule.scanEnabled).map((rule) => rule.name) ?? [],
    ...(scanners.length === 0 ? { verdicts: "GRAY: no scanner is configured (config.scanning)" } : {}),
  });
  logger.info("daemon.started", {
    smtp: smtp.addresses().map((a) => `${a.host}:${a.port}${a.implicitTls ? " (TLS)" : ""}`),
    ...(serve.smtp.processes > 1 ? { acceptors: serve.smtp.processes } : {}),
    admin: admin ? `${admin.address().host}:${admin.address().port}` : null,
    api: api ? `${api.address().host}:${api.address().port}` : null,
    mode: serve.rules === undefined ? "store" : "file",
    ruleSet: policy.ruleSet()?.name ?? null,
    spool: serve.spool.dir,
    pending: spool.queue.depth(),
  });

  return {
    addresses: () => smtp.addresses(),
    adminAddress: () => admin?.address() ?? null,
    apiAddress: () => api?.address() ?? null,
    reload: () => receiving.reload(),
    async stop(graceMs = serve.shutdownGraceMs) {
      if (stopping) return;
      stopping = true;
      const deadline = Date.now() + graceMs;
      logger.info("daemon.stopping", { graceMs });
      clearInterval(sweeper);
      verifier?.close();
      scannerWatch?.close();
      await api?.close();
      await smtp.close(graceMs);
      await processor.drain(Math.max(0, deadline - Date.now()));
      await spool.close();
      receiving.close();
      unsubscribe();
      await store.close();
      await admin?.close();
      logger.info("daemon.stopped", { pending: spool.queue.depth() });
    },
  };
}

/** What the daemon needs of the SMTP side, wherever it runs. */
interface SmtpSide {
  addresses(): BoundAddress[];
  /** Whether messages are being received (processing then holds back). */
  busy(): boolean;
  /** Stops accepting; open sessions get the grace period. */
  close(graceMs: number): Promise<void>;
  /** A reload took effect (acceptor processes need to be told). */
  policyChanged?(texts: PolicyTexts): void;
}

interface SmtpSideContext {
  policy: LivePolicy;
  spool: Spool;
  processor: Processor;
  logger: Logger;
  metrics: Metrics;
}

async function acceptInProcess(
  config: ReceiptdConfig,
  context: SmtpSideContext & { clock: () => Date; random: (bytes: number) => Uint8Array },
): Promise<SmtpSide> {
  const { processor, logger, metrics } = context;
  const intake = await startIntake(config, {
    policy: context.policy,
    spool: context.spool.writer,
    clock: context.clock,
    random: context.random,
    onAccepted: (seconds) => metrics.smtpAcceptSeconds.observe(seconds),
    onAuthenticated: (report) => reportAuthentication(report, logger, metrics),
    onEvent: (event) => {
      reportSmtp(event, logger, metrics);
      // Rule actions run after the 250, never before it (docs/behaviour.md §4): the reply is on its way
      // once this event is out, and processing starts on a later turn of the event loop.
      if (event.type === "data" && event.accepted) setImmediate(() => processor.enqueue(event.messageId));
    },
  });
  return {
    addresses: () => intake.listener.addresses(),
    busy: intake.busy,
    close: (graceMs) => intake.close(graceMs),
  };
}

async function acceptInProcesses(
  config: ReceiptdConfig,
  context: Omit<SmtpSideContext, "policy"> & { texts: () => PolicyTexts },
): Promise<SmtpSide> {
  const { spool, processor, logger, metrics } = context;
  const loggers = new Map<number, Logger>();
  const loggerOf = (acceptor: number): Logger => {
    let child = loggers.get(acceptor);
    if (!child) loggers.set(acceptor, (child = logger.child({ acceptor })));
    return child;
  };
  const pool = await AcceptorPool.start({
    count: config.serve.smtp.processes,
    config,
    policy: () => context.texts(),
    logger,
    onReport: (report, acceptor) => {
      if (report.kind === "accepted") {
        metrics.smtpAcceptSeconds.observe(report.seconds);
        return;
      }
      if (report.kind === "authenticated") {
        reportAuthentication(report.report, loggerOf(acceptor), metrics);
        return;
      }
      const { event } = report;
      reportSmtp(event, loggerOf(acceptor), metrics);
      // The acceptor reports a message once it is durable and its 250 is on its way.
      if (event.type === "data" && event.accepted) {
        spool.queue.adopt(event.messageId);
        processor.enqueue(event.messageId);
      }
    },
    onLost: () => {
      spool.queue.adoptUnreported().then(
        (ids) => {
          for (const id of ids) processor.enqueue(id);
          if (ids.length > 0) logger.warn("spool.adopted", { messages: ids.length, reason: "acceptor exited before reporting them" });
        },
        (error: unknown) => logger.error("spool.adopt_failed", { error }),
      );
    },
  });
  // A reload while the acceptors were starting: they ignore a generation they already have.
  pool.broadcastPolicy(context.texts());
  return {
    addresses: () => pool.addresses(),
    busy: () => pool.busy(),
    close: (graceMs) => pool.stop(graceMs),
    policyChanged: (texts) => pool.broadcastPolicy(texts),
  };
}

/** An SMTP event into the log and the metrics; the refusal label comes from the event's reason, never its reply text. */
export function reportSmtp(event: SmtpEvent, logger: Logger, metrics: Metrics): void {
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
      metrics.smtpRefused.inc({ stage: "connect", reason: REFUSAL_LABELS[event.reason] });
      logger.info("smtp.refused", event);
      return;
    case "mail":
      if (!event.accepted) metrics.smtpRefused.inc({ stage: "mail", reason: REFUSAL_LABELS[event.reason] });
      logger.debug("smtp.mail", event);
      return;
    case "rcpt":
      if (!event.accepted) {
        metrics.smtpRefused.inc({ stage: "rcpt", reason: REFUSAL_LABELS[event.reason] });
        logger.info("smtp.rcpt_refused", event);
      }
      return;
    case "data":
      if (event.accepted) {
        metrics.smtpMessagesAccepted.inc();
        logger.info("smtp.accepted", event);
      } else {
        metrics.smtpRefused.inc({ stage: "data", reason: REFUSAL_LABELS[event.reason] });
        logger.warn("smtp.data_refused", event);
      }
      return;
    case "tls":
      logger.debug("smtp.tls", event);
      return;
    case "deadline":
      metrics.smtpRefused.inc({ stage: event.stage, reason: "deadline" });
      logger.info("smtp.deadline", event);
      return;
    case "error":
      logger.warn("smtp.error", event);
      return;
  }
}

/** A message's authentication into the metrics; one whose DNS budget ran out is logged with how long it took. */
function reportAuthentication(report: AuthReport, logger: Logger, metrics: Metrics): void {
  metrics.authSeconds.observe(report.durationMs / 1000);
  for (const check of ["spf", "dkim", "dmarc"] as const) metrics.authResults.inc({ check, verdict: report.verdicts[check] });
  if (report.dnsTimedOut) {
    metrics.authDnsTimeouts.inc();
    logger.warn("auth.dns_budget_exceeded", { ...report });
  }
}

function reportProcessing(event: ProcessorEvent, logger: Logger, metrics: Metrics, slowActionMs: number): void {
  const { event: name, ...fields } = event;
  switch (event.event) {
    case "action-done":
    case "action-failed":
      if (event.durationMs >= slowActionMs) {
        logger.warn("processing.action_slow", { messageId: event.messageId, action: event.action, rule: event.rule, durationMs: event.durationMs });
      }
      metrics.actionSeconds.observe({ type: event.action }, event.durationMs / 1000);
      if (event.event === "action-done") {
        metrics.actions.inc({ type: event.action, outcome: "done" });
        logger.debug(`processing.${name}`, fields);
      } else {
        metrics.actions.inc({ type: event.action, outcome: event.failure === "transient" ? "retry" : "failed" });
        logger.warn(`processing.${name}`, fields);
      }
      return;
    case "message-completed":
    case "message-stopped":
    case "message-dead-lettered":
      // Counted once, where processing ends: a retried message is not counted per attempt.
      metrics.messagesProcessed.inc({ outcome: event.outcome });
      for (const rule of event.rules) metrics.ruleMatches.inc({ rule });
      if (event.event === "message-dead-lettered") {
        metrics.messagesDeadLettered.inc({ reason: event.cause });
        logger.error(`processing.${name}`, fields);
      } else {
        logger.info(`processing.${name}`, fields);
      }
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
