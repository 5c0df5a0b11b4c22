import { readFile } from "node:fs/promises";
import { hostname as osHostname } from "node:os";
import { dirname, resolve } from "node:path";

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

export interface MailboxHostConfig {
  host: string;
  port: number;
  lmtp?: boolean;
  secure?: boolean;
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
    lambdaHandlers: Record<string, string>;
    requestResponseTimeoutMs?: number;
  };
  bounce: { relay?: string };
  workmail: { organizations: Record<string, MailboxHostConfig> };
  /** Relative paths in the file (handlers, data directory) resolve against this. */
  baseDir: string;
}

export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly issues: string[],
  ) {
    super(issues.map((issue) => `${source}: ${issue}`).join("\n"));
    this.name = "ConfigError";
  }
}

type Json = Record<string, unknown>;

const isObject = (value: unknown): value is Json => typeof value === "object" && value !== null && !Array.isArray(value);

/** A small checker that collects every problem with its path instead of stopping at the first. */
class Reader {
  readonly issues: string[] = [];

  object(value: unknown, path: string, allowed: readonly string[]): Json {
    if (value === undefined) return {};
    if (!isObject(value)) {
      this.issues.push(`${path}: expected an object`);
      return {};
    }
    for (const key of Object.keys(value)) {
      if (!allowed.includes(key)) this.issues.push(`${path}.${key}: unknown key (allowed: ${allowed.join(", ")})`);
    }
    return value;
  }

  string(value: unknown, path: string, pattern?: RegExp, expected?: string): string | undefined {
    if (value === undefined) return undefined;
    if (typeof value !== "string" || value === "" || (pattern && !pattern.test(value))) {
      this.issues.push(`${path}: expected ${expected ?? "a non-empty string"}, found ${JSON.stringify(value)}`);
      return undefined;
    }
    return value;
  }

  oneOf<T extends string>(value: unknown, path: string, choices: readonly T[]): T | undefined {
    if (value === undefined) return undefined;
    if (!choices.includes(value as T)) {
      this.issues.push(`${path}: expected one of ${choices.map((c) => JSON.stringify(c)).join(", ")}, found ${JSON.stringify(value)}`);
      return undefined;
    }
    return value as T;
  }

  boolean(value: unknown, path: string): boolean | undefined {
    if (value === undefined) return undefined;
    if (typeof value !== "boolean") {
      this.issues.push(`${path}: expected true or false, found ${JSON.stringify(value)}`);
      return undefined;
    }
    return value;
  }

  integer(value: unknown, path: string, min: number, max: number): number | undefined {
    if (value === undefined) return undefined;
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
      this.issues.push(`${path}: expected a whole number from ${min} to ${max}, found ${JSON.stringify(value)}`);
      return undefined;
    }
    return value;
  }

  url(value: unknown, path: string, protocols: readonly string[]): string | undefined {
    const text = this.string(value, path);
    if (text === undefined) return undefined;
    try {
      const url = new URL(text);
      if (protocols.includes(url.protocol)) return text;
    } catch {
      // reported below
    }
    this.issues.push(`${path}: expected a URL starting with ${protocols.map((p) => `${p}//`).join(" or ")}, found ${JSON.stringify(text)}`);
    return undefined;
  }
}

const ARN = /^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d{12}:.+$/;

function readAwsService(reader: Reader, value: unknown, path: string, s3: boolean): AwsServiceConfig | undefined {
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

/**
 * The configuration from a parsed JSON document, with the environment's overrides applied:
 * RECEIPTD_DATA_DIR, RECEIPTD_HOSTNAME, RECEIPTD_BOUNCE_RELAY. AWS credentials, regions and
 * endpoints also come from the SDK's own variables (AWS_REGION, AWS_ENDPOINT_URL_S3, ...).
 */
export function parseConfig(
  doc: unknown,
  options: { source: string; baseDir: string; env?: NodeJS.ProcessEnv; backend?: "local" | "aws" },
): ReceiptdConfig {
  const env = options.env ?? process.env;
  const reader = new Reader();
  const raw = reader.object(doc, "config", ["hostname", "dataDir", "strict", "backend", "backends", "aws", "local", "bounce", "workmail"]);

  const hostname =
    reader.string(env.RECEIPTD_HOSTNAME ?? raw.hostname, "config.hostname", /^[A-Za-z0-9.-]+$/, "a host name") ?? osHostname();
  const dataDir = resolve(options.baseDir, reader.string(env.RECEIPTD_DATA_DIR ?? raw.dataDir, "config.dataDir") ?? "data");
  const strict = reader.boolean(raw.strict, "config.strict") ?? true;

  const bounceRaw = reader.object(raw.bounce, "config.bounce", ["relay"]);
  const relay = reader.url(env.RECEIPTD_BOUNCE_RELAY ?? bounceRaw.relay, "config.bounce.relay", ["smtp:", "smtps:"]);

  const organizations: Record<string, MailboxHostConfig> = {};
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

  const localRaw = reader.object(raw.local, "config.local", ["snsHttpSubscriptions", "lambdaHandlers", "requestResponseTimeoutMs"]);
  const local: ReceiptdConfig["local"] = { snsHttpSubscriptions: {}, lambdaHandlers: {} };
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

  const preset = options.backend ?? reader.oneOf(raw.backend, "config.backend", ["local", "aws"] as const) ?? "local";
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

  if (reader.issues.length > 0) throw new ConfigError(options.source, reader.issues);
  return {
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

/** The embedded default: everything local, under ./data. */
export function defaultConfig(
  options: { env?: NodeJS.ProcessEnv; backend?: "local" | "aws" } = {},
): ReceiptdConfig {
  return parseConfig({}, { source: "default configuration", baseDir: process.cwd(), ...options });
}

export async function loadConfigFile(
  path: string,
  options: { env?: NodeJS.ProcessEnv; backend?: "local" | "aws" } = {},
): Promise<ReceiptdConfig> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new ConfigError(path, [`cannot read the file: ${(error as Error).message}`]);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(path, [`invalid JSON: ${(error as Error).message}`]);
  }
  return parseConfig(doc, { source: path, baseDir: dirname(resolve(path)), ...options });
}
