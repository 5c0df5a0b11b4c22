import { isIP } from "node:net";
import { hostname as osHostname } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import { ConfigError } from "./config-error.js";
import { DEFAULTS } from "./defaults.js";
import { environmentOverrides } from "./environment.js";
import { FieldReader, isObject } from "./field-reader.js";
import type { Json } from "./field-reader.js";
import type { ApiCredential, AwsServiceConfig, BackendChoice, ReceiptdConfig, ServeConfig } from "./schema.js";

const ARN = /^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d{12}:.+$/;

function readAwsService(reader: FieldReader, value: unknown, path: string, s3: boolean): AwsServiceConfig | undefined {
  if (value === undefined) return undefined;
  const raw = reader.object(value, path, s3 ? ["region", "endpoint", "forcePathStyle"] : ["region", "endpoint"]);
  const config: AwsServiceConfig = {};
  const region = reader.string(raw.region, `${path}.region`, /^[a-z]{2}(-[a-z]+)+-\d+$/, "an AWS region such as us-east-1");
  const endpoint = reader.url(raw.endpoint, `${path}.endpoint`, ["http:", "https:"]);
  const forcePathStyle = reader.boolean(raw.forcePathStyle, `${path}.forcePathStyle`);
  if (region) config.region = region;
  if (endpoint) config.endpoint = endpoint;
  if (forcePathStyle !== undefined) config.forcePathStyle = forcePathStyle;
  return config;
}

/** RFC 1123 labels: letters, digits and inner hyphens, 63 at most; no empty label, no dot at either end. */
const LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
const HOSTNAME = new RegExp(`^(?=.{1,253}$)${LABEL}(?:\\.${LABEL})*$`);
/** A host name, whose last label is not all digits (that would be a mistyped IPv4 address). */
const isHostname = (text: string): boolean => HOSTNAME.test(text) && !/(?:^|\.)\d+$/.test(text);
/** Where to listen: an IPv4 or IPv6 address, or a host name. */
const isHost = (text: string): boolean => isIP(text) !== 0 || isHostname(text);

function readListen(reader: FieldReader, value: unknown): ServeConfig["smtp"]["listen"] {
  if (value === undefined) return [{ ...DEFAULTS.smtp.listen, implicitTls: false }];
  if (!Array.isArray(value) || value.length === 0) {
    reader.issues.push("config.smtp.listen: expected a non-empty list of {host, port, implicitTls?}");
    return [];
  }
  return value.flatMap((entry, i) => {
    const path = `config.smtp.listen[${i}]`;
    const raw = reader.object(entry, path, ["host", "port", "implicitTls"]);
    const host = reader.string(raw.host, `${path}.host`, isHost, "an IP address or host name");
    const port = reader.integer(raw.port, `${path}.port`, 0, 65535);
    const implicitTls = reader.boolean(raw.implicitTls, `${path}.implicitTls`) ?? false;
    if (raw.host === undefined) reader.issues.push(`${path}.host: required`);
    if (raw.port === undefined) reader.issues.push(`${path}.port: required`);
    return host !== undefined && port !== undefined ? [{ host, port, implicitTls }] : [];
  });
}

const ACCOUNT = /^\d{12}$/;
const REGION = /^[a-z]{2}(-[a-z]+)+-\d+$/;

function readApi(reader: FieldReader, value: unknown): ServeConfig["api"] {
  if (value === null) return null;
  const raw = reader.object(value, "config.api", ["host", "port", "credentials", "maxRequestBytes", "maxClockSkewMs", "url"]);
  const url = reader.url(raw.url, "config.api.url", ["http:", "https:"]);
  let credentials: ApiCredential[] = [{ ...DEFAULTS.api.credential, loopbackOnly: true }];
  if (raw.credentials !== undefined) {
    if (!Array.isArray(raw.credentials) || raw.credentials.length === 0) {
      reader.issues.push("config.api.credentials: expected a non-empty list of {accessKeyId, secretAccessKey, account}");
    } else {
      credentials = raw.credentials.flatMap((entry, i) => {
        const path = `config.api.credentials[${i}]`;
        const item = reader.object(entry, path, ["accessKeyId", "secretAccessKey", "account"]);
        const accessKeyId = reader.string(item.accessKeyId, `${path}.accessKeyId`, /^[A-Za-z0-9]{1,128}$/, "letters and digits");
        const secretAccessKey = reader.string(item.secretAccessKey, `${path}.secretAccessKey`);
        const account = reader.string(item.account, `${path}.account`, ACCOUNT, "a 12-digit AWS account ID");
        for (const key of ["accessKeyId", "secretAccessKey", "account"] as const) {
          if (item[key] === undefined) reader.issues.push(`${path}.${key}: required`);
        }
        return accessKeyId && secretAccessKey && account ? [{ accessKeyId, secretAccessKey, account, loopbackOnly: false }] : [];
      });
      const ids = credentials.map((c) => c.accessKeyId);
      const twice = ids.find((id, i) => ids.indexOf(id) !== i);
      if (twice !== undefined) reader.issues.push(`config.api.credentials: access key ${twice} is listed twice`);
    }
  }
  return {
    host: reader.string(raw.host, "config.api.host", isHost, "an IP address or host name") ?? DEFAULTS.api.host,
    port: reader.integer(raw.port, "config.api.port", 0, 65535) ?? DEFAULTS.api.port,
    credentials,
    maxRequestBytes: reader.integer(raw.maxRequestBytes, "config.api.maxRequestBytes", 1024, 64 * 1024 * 1024) ?? DEFAULTS.api.maxRequestBytes,
    maxClockSkewMs: reader.integer(raw.maxClockSkewMs, "config.api.maxClockSkewMs", 1000, 3_600_000) ?? DEFAULTS.api.maxClockSkewMs,
    ...(url ? { url } : {}),
  };
}

/** A list of strings each of which passes `valid`; each bad entry named by its index. */
function readList(reader: FieldReader, value: unknown, path: string, valid: (text: string) => boolean, expected: string): string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) {
    reader.issues.push(`${path}: expected a list`);
    return undefined;
  }
  return value.flatMap((entry, i) => {
    const text = reader.string(entry, `${path}[${i}]`, valid, expected);
    return text === undefined ? [] : [text];
  });
}

function readIdentities(reader: FieldReader, value: unknown, path: string): string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || value.some((entry) => typeof entry !== "string" || entry === "")) {
    reader.issues.push(`${path}: expected a list of domains and addresses`);
    return undefined;
  }
  return value as string[];
}

function readServe(reader: FieldReader, raw: Json, baseDir: string, dataDir: string): ServeConfig {
  const path = (value: string | undefined) => (value === undefined ? undefined : resolve(baseDir, value));
  const rules = path(reader.string(raw.rules, "config.rules"));
  const filters = path(reader.string(raw.filters, "config.filters"));
  if (filters !== undefined && rules === undefined) reader.issues.push("config.filters: needs config.rules (file mode); in store mode use config.seed.filters");
  let seed: ServeConfig["seed"];
  if (raw.seed !== undefined) {
    const seedRaw = reader.object(raw.seed, "config.seed", ["rules", "filters", "identities"]);
    const seedRules = path(reader.string(seedRaw.rules, "config.seed.rules"));
    const seedFilters = path(reader.string(seedRaw.filters, "config.seed.filters"));
    const seedIdentities = readIdentities(reader, seedRaw.identities, "config.seed.identities");
    if (rules !== undefined) reader.issues.push("config.seed: only for store mode; config.rules makes file mode");
    seed = {
      ...(seedRules === undefined ? {} : { rules: seedRules }),
      ...(seedFilters === undefined ? {} : { filters: seedFilters }),
      ...(seedIdentities === undefined ? {} : { identities: seedIdentities }),
    };
  }
  const identities = readIdentities(reader, raw.identities, "config.identities");

  const smtpRaw = reader.object(raw.smtp, "config.smtp", [
    "listen",
    "banner",
    "tls",
    "proxyProtocolFrom",
    "maxConnections",
    "maxConnectionsPerIp",
    "socketTimeoutMs",
    "commandDeadlineMs",
    "dataDeadlineMs",
    "minDataBytesPerSecond",
    "maxMessageBytes",
    "maxRecipients",
    "earlyTalkerCheckMs",
    "reverseDns",
    "processes",
  ]);
  const tlsRaw = reader.object(smtpRaw.tls, "config.smtp.tls", ["cert", "key"]);
  const cert = path(reader.string(tlsRaw.cert, "config.smtp.tls.cert"));
  const key = path(reader.string(tlsRaw.key, "config.smtp.tls.key"));
  if (smtpRaw.tls !== undefined && (cert === undefined || key === undefined)) {
    reader.issues.push("config.smtp.tls: needs both cert and key (PEM file paths)");
  }
  const listen = readListen(reader, smtpRaw.listen);
  if (listen.some((address) => address.implicitTls) && (cert === undefined || key === undefined)) {
    reader.issues.push("config.smtp.listen: an implicitTls listener needs config.smtp.tls");
  }
  let proxyProtocolFrom: string[] = [];
  if (smtpRaw.proxyProtocolFrom !== undefined) {
    if (!Array.isArray(smtpRaw.proxyProtocolFrom) || smtpRaw.proxyProtocolFrom.some((entry) => typeof entry !== "string")) {
      reader.issues.push("config.smtp.proxyProtocolFrom: expected a list of load balancer addresses or CIDR ranges");
    } else {
      proxyProtocolFrom = smtpRaw.proxyProtocolFrom as string[];
    }
  }
  const banner = reader.string(smtpRaw.banner, "config.smtp.banner");

  const authRaw = reader.object(raw.authentication, "config.authentication", ["enabled", "dnsTimeoutMs", "workers"]);
  const scanRaw = reader.object(raw.scanning, "config.scanning", ["spamd", "rspamd", "clamd", "timeoutMs", "spamdMaxBytes"]);
  const engine = (value: unknown, path: string) => {
    const text = reader.string(value, path, (t) => isAbsolute(t) || /^[^:\s]+:\d{1,5}$/.test(t) || /^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(t), "host:port or the absolute path of a Unix socket");
    if (text === undefined) return undefined;
    if (isAbsolute(text)) return { path: text };
    const colon = text.lastIndexOf(":");
    return { host: text.slice(0, colon).replace(/^\[|\]$/g, ""), port: Number(text.slice(colon + 1)) };
  };
  const spamd = engine(scanRaw.spamd, "config.scanning.spamd");
  const clamd = engine(scanRaw.clamd, "config.scanning.clamd");
  const rspamd = reader.url(scanRaw.rspamd, "config.scanning.rspamd", ["http:"]);
  if (spamd && rspamd) reader.issues.push("config.scanning: spamd and rspamd both give the spam verdict; configure one");
  const spoolRaw = reader.object(raw.spool, "config.spool", ["dir", "retentionHours"]);
  const processingRaw = reader.object(raw.processing, "config.processing", [
    "concurrency",
    "concurrencyWhileReceiving",
    "retryWindowMinutes",
    "backoffInitialMs",
    "backoffMaxMs",
  ]);
  let admin: ServeConfig["admin"] = { ...DEFAULTS.admin };
  if (raw.admin === null) admin = null;
  else if (raw.admin !== undefined) {
    const adminRaw = reader.object(raw.admin, "config.admin", ["host", "port", "url", "token"]);
    const token = reader.string(adminRaw.token, "config.admin.token", /^[\x21-\x7e]{16,}$/, "at least 16 printable characters");
    const url = reader.url(adminRaw.url, "config.admin.url", ["http:", "https:"]);
    admin = {
      host: reader.string(adminRaw.host, "config.admin.host", isHost, "an IP address or host name") ?? DEFAULTS.admin.host,
      port: reader.integer(adminRaw.port, "config.admin.port", 0, 65535) ?? DEFAULTS.admin.port,
      // No trailing slash: paths are appended to it.
      ...(url === undefined ? {} : { url: url.replace(/\/+$/, "") }),
      ...(token === undefined ? {} : { token }),
    };
  }

  const api = readApi(reader, raw.api);
  const stateRaw = reader.object(raw.state, "config.state", [
    "dir",
    "account",
    "region",
    "verification",
    "verificationIntervalMs",
    "verificationTimeoutHours",
    "dnsServers",
  ]);
  const dnsServers = readList(reader, stateRaw.dnsServers, "config.state.dnsServers", (text) => isIP(text) !== 0 || /^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):\d{1,5}$/.test(text), "an IP address, or ip:port");
  const state: ServeConfig["state"] = {
    dir: path(reader.string(stateRaw.dir, "config.state.dir")) ?? join(dataDir, DEFAULTS.state.dirInDataDir),
    account: reader.string(stateRaw.account, "config.state.account", ACCOUNT, "a 12-digit AWS account ID") ?? api?.credentials[0]?.account ?? DEFAULTS.api.credential.account,
    region: reader.string(stateRaw.region, "config.state.region", REGION, "an AWS region such as us-east-1") ?? DEFAULTS.state.region,
    verification: reader.oneOf(stateRaw.verification, "config.state.verification", ["auto", "dns"] as const) ?? DEFAULTS.state.verification,
    verificationIntervalMs:
      reader.integer(stateRaw.verificationIntervalMs, "config.state.verificationIntervalMs", 100, 86_400_000) ?? DEFAULTS.state.verificationIntervalMs,
    verificationTimeoutHours:
      reader.integer(stateRaw.verificationTimeoutHours, "config.state.verificationTimeoutHours", 1, 24 * 365) ?? DEFAULTS.state.verificationTimeoutHours,
    ...(dnsServers === undefined ? {} : { dnsServers }),
  };

  return {
    api,
    state,
    ...(rules === undefined ? {} : { rules }),
    ...(seed === undefined ? {} : { seed }),
    ...(filters === undefined ? {} : { filters }),
    ...(identities === undefined ? {} : { identities }),
    smtp: {
      listen,
      ...(banner === undefined ? {} : { banner }),
      ...(cert !== undefined && key !== undefined ? { tls: { cert, key } } : {}),
      proxyProtocolFrom,
      maxConnections: reader.integer(smtpRaw.maxConnections, "config.smtp.maxConnections", 1, 1_000_000) ?? DEFAULTS.smtp.maxConnections,
      maxConnectionsPerIp: reader.integer(smtpRaw.maxConnectionsPerIp, "config.smtp.maxConnectionsPerIp", 1, 1_000_000) ?? DEFAULTS.smtp.maxConnectionsPerIp,
      socketTimeoutMs: reader.integer(smtpRaw.socketTimeoutMs, "config.smtp.socketTimeoutMs", 1000, 3_600_000) ?? DEFAULTS.smtp.socketTimeoutMs,
      commandDeadlineMs:
        reader.integer(smtpRaw.commandDeadlineMs, "config.smtp.commandDeadlineMs", 1000, 3_600_000) ?? DEFAULTS.smtp.commandDeadlineMs,
      dataDeadlineMs: reader.integer(smtpRaw.dataDeadlineMs, "config.smtp.dataDeadlineMs", 1000, 3_600_000) ?? DEFAULTS.smtp.dataDeadlineMs,
      minDataBytesPerSecond:
        reader.integer(smtpRaw.minDataBytesPerSecond, "config.smtp.minDataBytesPerSecond", 1, 1_000_000_000) ??
        DEFAULTS.smtp.minDataBytesPerSecond,
      maxMessageBytes: reader.integer(smtpRaw.maxMessageBytes, "config.smtp.maxMessageBytes", 1024, 2 ** 40) ?? DEFAULTS.smtp.maxMessageBytes,
      maxRecipients: reader.integer(smtpRaw.maxRecipients, "config.smtp.maxRecipients", 1, 100_000) ?? DEFAULTS.smtp.maxRecipients,
      earlyTalkerCheckMs: reader.integer(smtpRaw.earlyTalkerCheckMs, "config.smtp.earlyTalkerCheckMs", 0, 60_000) ?? DEFAULTS.smtp.earlyTalkerCheckMs,
      reverseDns: reader.boolean(smtpRaw.reverseDns, "config.smtp.reverseDns") ?? DEFAULTS.smtp.reverseDns,
      processes: reader.integer(smtpRaw.processes, "config.smtp.processes", 1, 64) ?? DEFAULTS.smtp.processes,
    },
    scanning: {
      ...(spamd ? { spamd } : {}),
      ...(rspamd ? { rspamd } : {}),
      ...(clamd ? { clamd } : {}),
      timeoutMs: reader.integer(scanRaw.timeoutMs, "config.scanning.timeoutMs", 100, 600_000) ?? DEFAULTS.scanning.timeoutMs,
      spamdMaxBytes: reader.integer(scanRaw.spamdMaxBytes, "config.scanning.spamdMaxBytes", 1024, 1024 * 1024 * 1024) ?? DEFAULTS.scanning.spamdMaxBytes,
    },
    authentication: {
      enabled: reader.boolean(authRaw.enabled, "config.authentication.enabled") ?? DEFAULTS.authentication.enabled,
      dnsTimeoutMs: reader.integer(authRaw.dnsTimeoutMs, "config.authentication.dnsTimeoutMs", 1, 60_000) ?? DEFAULTS.authentication.dnsTimeoutMs,
      workers: reader.integer(authRaw.workers, "config.authentication.workers", 1, 64) ?? DEFAULTS.authentication.workers,
    },
    spool: {
      dir: path(reader.string(spoolRaw.dir, "config.spool.dir")) ?? join(dataDir, DEFAULTS.spoolDirInDataDir),
      retentionHours: reader.integer(spoolRaw.retentionHours, "config.spool.retentionHours", 0, 24 * 365) ?? DEFAULTS.spool.retentionHours,
    },
    processing: {
      concurrency: reader.integer(processingRaw.concurrency, "config.processing.concurrency", 1, 1024) ?? DEFAULTS.processing.concurrency,
      concurrencyWhileReceiving:
        reader.integer(processingRaw.concurrencyWhileReceiving, "config.processing.concurrencyWhileReceiving", 1, 1024) ??
        DEFAULTS.processing.concurrencyWhileReceiving,
      retryWindowMinutes: reader.integer(processingRaw.retryWindowMinutes, "config.processing.retryWindowMinutes", 0, 7 * 24 * 60) ??
        DEFAULTS.processing.retryWindowMinutes,
      backoffInitialMs: reader.integer(processingRaw.backoffInitialMs, "config.processing.backoffInitialMs", 1, 3_600_000) ??
        DEFAULTS.processing.backoffInitialMs,
      backoffMaxMs: reader.integer(processingRaw.backoffMaxMs, "config.processing.backoffMaxMs", 1, 86_400_000) ?? DEFAULTS.processing.backoffMaxMs,
    },
    admin,
    shutdownGraceMs: reader.integer(raw.shutdownGraceMs, "config.shutdownGraceMs", 0, 3_600_000) ?? DEFAULTS.shutdownGraceMs,
  };
}

/**
 * The configuration from a parsed JSON document, with the environment's overrides applied
 * (environment.ts). Every problem is reported at once, in a ConfigError naming each field.
 */
export function parseConfig(
  doc: unknown,
  options: { source: string; baseDir: string; env?: NodeJS.ProcessEnv; backend?: "local" | "aws" },
): ReceiptdConfig {
  const overrides = environmentOverrides(options.env ?? process.env);
  const reader = new FieldReader();
  const raw = reader.object(doc, "config", [
    "hostname",
    "dataDir",
    "strict",
    "backend",
    "backends",
    "aws",
    "local",
    "bounce",
    "workmail",
    "rules",
    "filters",
    "identities",
    "smtp",
    "authentication",
    "scanning",
    "spool",
    "processing",
    "admin",
    "shutdownGraceMs",
    "api",
    "state",
    "seed",
  ]);

  const hostname =
    reader.string(overrides.hostname ?? raw.hostname, "config.hostname", isHostname, "a host name") ?? osHostname();
  const dataDir = resolve(options.baseDir, reader.string(overrides.dataDir ?? raw.dataDir, "config.dataDir") ?? DEFAULTS.dataDir);
  const strict = reader.boolean(raw.strict, "config.strict") ?? DEFAULTS.strict;

  const bounceRaw = reader.object(raw.bounce, "config.bounce", ["relay"]);
  const relay = reader.url(overrides.bounceRelay ?? bounceRaw.relay, "config.bounce.relay", ["smtp:", "smtps:"]);

  const organizations: ReceiptdConfig["workmail"]["organizations"] = {};
  const workmailRaw = reader.object(raw.workmail, "config.workmail", ["organizations"]);
  // Organization ARNs are free keys, so the object is checked by hand rather than against a key list.
  const orgs = isObject(workmailRaw.organizations) ? workmailRaw.organizations : {};
  if (workmailRaw.organizations !== undefined && !isObject(workmailRaw.organizations)) {
    reader.issues.push("config.workmail.organizations: expected an object of organization ARN to {host, port}");
  }
  for (const [arn, value] of Object.entries(orgs)) {
    const path = `config.workmail.organizations["${arn}"]`;
    if (!/^arn:aws[a-z-]*:workmail:[a-z0-9-]+:\d{12}:organization\/m-[0-9a-f]{32}$/.test(arn)) {
      reader.issues.push(`${path}: expected a WorkMail organization ARN as the key`);
    }
    const entry = reader.object(value, path, ["host", "port", "lmtp", "secure"]);
    const host = reader.string(entry.host, `${path}.host`);
    const port = reader.integer(entry.port, `${path}.port`, 1, 65535);
    if (host === undefined) reader.issues.push(`${path}.host: required`);
    if (port === undefined && entry.port === undefined) reader.issues.push(`${path}.port: required`);
    const lmtp = reader.boolean(entry.lmtp, `${path}.lmtp`);
    const secure = reader.boolean(entry.secure, `${path}.secure`);
    if (host !== undefined && port !== undefined) {
      organizations[arn] = { host, port, ...(lmtp === undefined ? {} : { lmtp }), ...(secure === undefined ? {} : { secure }) };
    }
  }

  const awsRaw = reader.object(raw.aws, "config.aws", ["region", "s3", "sns", "lambda", "requestResponseTimeoutMs"]);
  const aws: ReceiptdConfig["aws"] = {};
  const region = reader.string(awsRaw.region, "config.aws.region", /^[a-z]{2}(-[a-z]+)+-\d+$/, "an AWS region such as us-east-1");
  if (region) aws.region = region;
  for (const service of ["s3", "sns", "lambda"] as const) {
    const serviceConfig = readAwsService(reader, awsRaw[service], `config.aws.${service}`, service === "s3");
    if (serviceConfig) aws[service] = serviceConfig;
  }
  const awsTimeout = reader.integer(awsRaw.requestResponseTimeoutMs, "config.aws.requestResponseTimeoutMs", 1, 900_000);
  if (awsTimeout !== undefined) aws.requestResponseTimeoutMs = awsTimeout;

  const localRaw = reader.object(raw.local, "config.local", [
    "snsHttpSubscriptions",
    "snsSignatureVersion",
    "lambdaHandlers",
    "requestResponseTimeoutMs",
  ]);
  const signatureVersion = reader.oneOf(
    typeof localRaw.snsSignatureVersion === "number" ? String(localRaw.snsSignatureVersion) : localRaw.snsSignatureVersion,
    "config.local.snsSignatureVersion",
    ["1", "2"] as const,
  );
  const local: ReceiptdConfig["local"] = { snsHttpSubscriptions: {}, snsSignatureVersion: signatureVersion ?? DEFAULTS.snsSignatureVersion, lambdaHandlers: {} };
  const subscriptions = isObject(localRaw.snsHttpSubscriptions) ? localRaw.snsHttpSubscriptions : {};
  if (localRaw.snsHttpSubscriptions !== undefined && !isObject(localRaw.snsHttpSubscriptions)) {
    reader.issues.push("config.local.snsHttpSubscriptions: expected an object of topic ARN (or \"*\") to a list of URLs");
  }
  for (const [topic, urls] of Object.entries(subscriptions)) {
    const path = `config.local.snsHttpSubscriptions["${topic}"]`;
    if (topic !== "*" && !ARN.test(topic)) reader.issues.push(`${path}: expected a topic ARN or "*" as the key`);
    if (!Array.isArray(urls)) {
      reader.issues.push(`${path}: expected a list of URLs`);
      continue;
    }
    local.snsHttpSubscriptions[topic] = urls.flatMap((url, i) => reader.url(url, `${path}[${i}]`, ["http:", "https:"]) ?? []);
  }
  const handlers = isObject(localRaw.lambdaHandlers) ? localRaw.lambdaHandlers : {};
  if (localRaw.lambdaHandlers !== undefined && !isObject(localRaw.lambdaHandlers)) {
    reader.issues.push("config.local.lambdaHandlers: expected an object of function ARN to module path");
  }
  for (const [arn, modulePath] of Object.entries(handlers)) {
    const path = `config.local.lambdaHandlers["${arn}"]`;
    if (!/^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_-]+(:[A-Za-z0-9_$-]+)?$/.test(arn)) {
      reader.issues.push(`${path}: expected a Lambda function ARN as the key`);
    }
    const modulePathText = reader.string(modulePath, path, undefined, "the path of a JavaScript module");
    if (modulePathText) local.lambdaHandlers[arn] = modulePathText;
  }
  const localTimeout = reader.integer(localRaw.requestResponseTimeoutMs, "config.local.requestResponseTimeoutMs", 1, 900_000);
  if (localTimeout !== undefined) local.requestResponseTimeoutMs = localTimeout;

  const preset = options.backend ?? reader.oneOf(raw.backend, "config.backend", ["local", "aws"] as const) ?? DEFAULTS.backend;
  const backendsRaw = reader.object(raw.backends, "config.backends", ["S3", "SNS", "Lambda", "Bounce", "WorkMail"]);
  const backends: BackendChoice = {
    S3: reader.oneOf(backendsRaw.S3, "config.backends.S3", ["aws", "local"] as const) ?? preset,
    SNS: reader.oneOf(backendsRaw.SNS, "config.backends.SNS", ["aws", "local"] as const) ?? preset,
    Lambda: reader.oneOf(backendsRaw.Lambda, "config.backends.Lambda", ["aws", "local"] as const) ?? preset,
    Bounce: reader.oneOf(backendsRaw.Bounce, "config.backends.Bounce", ["relay", "outbox"] as const) ?? (relay ? "relay" : "outbox"),
    WorkMail:
      reader.oneOf(backendsRaw.WorkMail, "config.backends.WorkMail", ["smtp", "maildir"] as const) ??
      (Object.keys(organizations).length > 0 ? "smtp" : "maildir"),
  };
  if (backends.Bounce === "relay" && !relay) reader.issues.push("config.backends.Bounce: \"relay\" needs config.bounce.relay (or RECEIPTD_BOUNCE_RELAY)");
  if (backends.WorkMail === "smtp" && Object.keys(organizations).length === 0) {
    reader.issues.push("config.backends.WorkMail: \"smtp\" needs config.workmail.organizations");
  }

  const serve = readServe(reader, raw, options.baseDir, dataDir);

  if (reader.issues.length > 0) throw new ConfigError(options.source, reader.issues);
  return {
    serve,
    hostname,
    dataDir,
    strict,
    backends,
    aws,
    local,
    bounce: relay ? { relay } : {},
    workmail: { organizations },
    baseDir: options.baseDir,
  };
}
