import { availableParallelism } from "node:os";

/**
 * Every default of receiptd, written once: the configuration fills in what a file leaves out
 * from here, and a module used without the configuration (the library, tests) falls back to
 * the same values. README.md documents these numbers; change them together.
 */
export const DEFAULTS = Object.freeze({
  /** Relative to the configuration file's directory. */
  dataDir: "data",
  /** The spool's directory inside the data directory. */
  spoolDirInDataDir: "spool",
  strict: true,
  /** Where every action type's effects go when `backends` does not say. */
  backend: "local",
  smtp: Object.freeze({
    listen: Object.freeze({ host: "127.0.0.1", port: 2525 }),
    maxConnections: 1000,
    maxConnectionsPerIp: 50,
    socketTimeoutMs: 300_000,
    /**
     * Input deadlines (docs/behaviour.md §4). A command line comes in one packet from any real
     * client; a minute leaves room for a person typing. DATA's 5 minutes and 500 bytes/s are
     * Postfix's smtpd_timeout and smtpd_min_data_rate: a client at that rate or above is never
     * cut, a 1 byte/s trickle within about 5 minutes.
     */
    commandDeadlineMs: 60_000,
    dataDeadlineMs: 300_000,
    minDataBytesPerSecond: 500,
    /** SES's limit for a received message, headers included. */
    maxMessageBytes: 40 * 1024 * 1024,
    /** SES's limit per message (docs/behaviour.md §4). */
    maxRecipients: 100,
    earlyTalkerCheckMs: 0,
    reverseDns: true,
    processes: 1,
  }),
  scanning: Object.freeze({
    /** A scan that takes longer gives PROCESSING_FAILED; the message goes on. */
    timeoutMs: 10_000,
    /** spamc's own default limit: larger messages are not sent to spamd (and are GRAY). */
    spamdMaxBytes: 500 * 1024,
  }),
  authentication: Object.freeze({
    enabled: true,
    /** Total DNS time of one message's SPF, DKIM and DMARC checks. */
    dnsTimeoutMs: 3000,
    /**
     * Authentication worker threads (src/mail/auth-pool.ts). Each runs many messages at once, so
     * one per core is plenty, and four bound the memory of idle threads.
     */
    workers: Math.min(4, availableParallelism()),
  }),
  spool: Object.freeze({ retentionHours: 24 }),
  processing: Object.freeze({
    concurrency: 8,
    concurrencyWhileReceiving: 1,
    /** SES retries for 4 hours (docs/behaviour.md §8). */
    retryWindowMinutes: 240,
    backoffInitialMs: 1000,
    backoffMaxMs: 300_000,
  }),
  /** How long a ready message may wait while mail is being received, before it runs anyway (not a setting). */
  processingMaxDeferMs: 30_000,
  /** An action attempt taking this long is logged as processing.action_slow (not a setting). */
  slowActionMs: 5000,
  admin: Object.freeze({ host: "127.0.0.1", port: 9025 }),
  /** 4579 was SES's port in LocalStack's per-service days, so SES tooling often has it already. */
  api: Object.freeze({
    host: "127.0.0.1",
    port: 4579,
    /** The embedded default's key, documented in the README and accepted only from loopback. */
    credential: Object.freeze({ accessKeyId: "test", secretAccessKey: "test", account: "123456789012" }),
    maxRequestBytes: 1024 * 1024,
    /** SigV4's own limit for X-Amz-Date against the server's clock. */
    maxClockSkewMs: 15 * 60_000,
  }),
  state: Object.freeze({
    /** The state store's directory inside the data directory. */
    dirInDataDir: "state",
    region: "us-east-1",
    verification: "auto",
    verificationIntervalMs: 60_000,
    /** SES marks a domain Failed when its record is not found within 72 hours. */
    verificationTimeoutHours: 72,
  }),
  /** The local SNS signs HTTP envelopes as SNS does by default: SignatureVersion 1, RSA-SHA1. */
  snsSignatureVersion: "1",
  shutdownGraceMs: 30_000,
  /** How long a RequestResponse Lambda invocation may take; SES waits 30 s. */
  requestResponseTimeoutMs: 30_000,
});
