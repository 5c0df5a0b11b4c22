/**
 * The shape of a read configuration (read-config.ts makes one). A setting whose shape belongs to
 * the module that uses it (a listen address, a mailbox host) is that module's type, imported.
 */
import type { MailboxHost } from "../actions/transports/mailbox.js";
import type { ListenAddress } from "../smtp/index.js";

/** Where each action type's effects go. */
export interface BackendChoice {
  S3: "aws" | "local";
  SNS: "aws" | "local";
  Lambda: "aws" | "local";
  /** DSNs: through an SMTP relay, or as .eml files in `<dataDir>/outbox`. */
  Bounce: "relay" | "outbox";
  /** WorkMail: over SMTP/LMTP to the organization's mail host, or into a local Maildir. */
  WorkMail: "smtp" | "maildir";
}

export interface AwsServiceConfig {
  region?: string;
  endpoint?: string;
  forcePathStyle?: boolean;
}

export interface ReceiptdConfig {
  hostname: string;
  /** Absolute. */
  dataDir: string;
  strict: boolean;
  backends: BackendChoice;
  aws: {
    region?: string;
    s3?: AwsServiceConfig;
    sns?: AwsServiceConfig;
    lambda?: AwsServiceConfig;
    requestResponseTimeoutMs?: number;
  };
  local: {
    snsHttpSubscriptions: Record<string, string[]>;
    /** How HTTP subscribers' envelopes are signed: "1" RSA-SHA1 (SNS's default), "2" RSA-SHA256. */
    snsSignatureVersion: "1" | "2";
    lambdaHandlers: Record<string, string>;
    requestResponseTimeoutMs?: number;
  };
  bounce: { relay?: string };
  /** The mail host of each organization, by ARN; its TLS options are not configurable. */
  workmail: { organizations: Record<string, Omit<MailboxHost, "tls">> };
  /** Relative paths in the file (handlers, data directory) resolve against this. */
  baseDir: string;
  serve: ServeConfig;
}

/** What `receiptd serve` adds to the action configuration. */
export interface ServeConfig {
  /**
   * File mode: the absolute path of the active rule set (SES JSON), which then owns receiving with
   * `filters` and `identities`. Absent: store mode, the SES API owns it (README "Where the state lives").
   */
  rules?: string;
  filters?: string;
  /** Verified identities; absent: the domains the rule set names. */
  identities?: string[];
  /** Store mode: files imported once, into an empty store (absolute paths). */
  seed?: { rules?: string; filters?: string; identities?: string[] };
  smtp: {
    /** The listener's addresses, each saying whether it is implicit TLS (SMTPS). */
    listen: Required<ListenAddress>[];
    banner?: string;
    /** Absolute paths of the PEM certificate and key, for STARTTLS and implicit TLS. */
    tls?: { cert: string; key: string };
    proxyProtocolFrom: string[];
    maxConnections: number;
    maxConnectionsPerIp: number;
    socketTimeoutMs: number;
    /** docs/behaviour.md §4: from a command line's first byte to its line feed, whatever trickles in. */
    commandDeadlineMs: number;
    /** docs/behaviour.md §4: DATA's budget at the 354 and its cap; each byte adds 1/minDataBytesPerSecond s. */
    dataDeadlineMs: number;
    minDataBytesPerSecond: number;
    maxMessageBytes: number;
    maxRecipients: number;
    earlyTalkerCheckMs: number;
    reverseDns: boolean;
    /**
     * 1: SMTP is served by the daemon's own process. More: by that many acceptor processes, which
     * store messages in the spool and leave processing to the daemon's process. Connection limits
     * apply per process.
     */
    processes: number;
  };
  /** SPF, DKIM and DMARC on receipt (needs DNS), in `workers` worker threads. */
  authentication: { enabled: boolean; dnsTimeoutMs: number; workers: number };
  /**
   * Spam and virus scanning for rules with ScanEnabled (docs/behaviour.md §6): `spamd` and
   * `clamd` at `host:port` or a Unix socket path, or `rspamd` (its HTTP URL) for spam instead
   * of spamd; without an engine for a kind, that verdict stays GRAY.
   */
  scanning: { spamd?: EngineAddress; rspamd?: string; clamd?: EngineAddress; timeoutMs: number; spamdMaxBytes: number };
  spool: { dir: string; retentionHours: number };
  processing: {
    concurrency: number;
    /** Messages processed at once while SMTP clients are being answered; acceptance comes first. */
    concurrencyWhileReceiving: number;
    retryWindowMinutes: number;
    backoffInitialMs: number;
    backoffMaxMs: number;
  };
  /**
   * Health, readiness and metrics over HTTP, and the local SNS's certificate and unsubscribe
   * links, and requeue; null turns it off. `url`: how SNS subscribers reach it, if not at
   * http://host:port. `token`: what a requeue must present; without it, requeue is taken from
   * loopback addresses only.
   */
  admin: { host: string; port: number; url?: string; token?: string } | null;
  /** How long SIGTERM waits for sessions and actions to finish. */
  shutdownGraceMs: number;
  /** The SES API listener (src/api/); null turns it off. */
  api: ApiConfig | null;
  /** The durable state the API changes and the MX follows (src/store/). */
  state: StateConfig;
}

/** One access key the API accepts, and the account its requests act on. */
export interface ApiCredential {
  accessKeyId: string;
  secretAccessKey: string;
  /** 12 digits. */
  account: string;
  /**
   * Accepted only from loopback addresses: the embedded default's documented key, which anyone
   * can read in the README, must never open the API to the network.
   */
  loopbackOnly: boolean;
}

export interface ApiConfig {
  host: string;
  port: number;
  /** Never empty: without configured keys, the embedded default's key (loopback only). */
  credentials: ApiCredential[];
  /** Larger request bodies get 413 and SES's error, before the body is read further. */
  maxRequestBytes: number;
  /** How far a request's X-Amz-Date may be from the server's clock (SigV4 allows 15 minutes). */
  maxClockSkewMs: number;
  /** The API as the addresses it emails confirmation links to reach it, if not at http://host:port. */
  url?: string;
}

export interface StateConfig {
  /** Absolute. */
  dir: string;
  /** The account and region whose active rule set, filters and identities the MX follows. */
  account: string;
  region: string;
  /** `auto`: identities are verified at once (local use); `dns`: by their DNS records, on a schedule. */
  verification: "auto" | "dns";
  /** How often pending identities' DNS records are checked (dns mode). */
  verificationIntervalMs: number;
  /** A domain still unverified this long after it was added becomes Failed, as SES gives up after 72 hours. */
  verificationTimeoutHours: number;
  /** DNS servers for verification (`ip` or `ip:port`); absent: the system's. */
  dnsServers?: string[];
}

/** A scanning engine's address: TCP `host:port`, or a Unix socket path. */
export type EngineAddress = { host: string; port: number } | { path: string };
