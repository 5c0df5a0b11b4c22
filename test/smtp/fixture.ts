import { randomBytes } from "node:crypto";
import { mkdtemp, open, readdir, rm, unlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generate } from "selfsigned";
import { afterEach } from "vitest";
import { prependedHeaderBytes } from "../../src/mail/edit.js";
import { storedMessage } from "../../src/mail/stored.js";
import { compileFilters } from "../../src/rules/filters.js";
import type { CompiledFilters } from "../../src/rules/filters.js";
import type { IpFilter, RuleSet } from "../../src/rules/model.js";
import { identitiesFrom } from "../../src/rules/recipients.js";
import { SmtpListener } from "../../src/smtp/index.js";
import type { AcceptedSession, SmtpEvent, SmtpListenerOptions } from "../../src/smtp/index.js";
import { rule, ruleSet } from "../helpers/rules.js";
import { RawSmtp } from "../helpers/smtp-client.js";

export const HOSTNAME = "mx.receiptd.test";
export const FIXED_DATE = new Date("2026-11-23T12:00:00Z");

/** The rule set most tests run against: docs/behaviour.md §4's RCPT TO rows each have a recipient here. */
export const RULES: RuleSet = ruleSet(
  rule("info", ["info@example.com"]),
  rule("disabled", ["off@example.com"], [], { enabled: false }),
  rule("org", ["example.org"]),
  rule("secure", ["secure.example.net"], [], { tlsPolicy: "Require" }),
);
export const IDENTITIES = identitiesFrom(["example.com", "example.org", "secure.example.net"]);

/** Mutable, as a reload would change it: the listener reads it at each decision. */
export interface TestPolicy {
  ruleSet: RuleSet | null;
  filters: CompiledFilters;
}

export interface StoredMessage {
  session: AcceptedSession;
  message: Buffer;
}

export interface Harness {
  listener: SmtpListener;
  port: number;
  policy: TestPolicy;
  /** Messages accept() stored, in the order it resolved. */
  stored: StoredMessage[];
  events: SmtpEvent[];
  /** Files left in the spool directory: accepted messages only. */
  spoolFiles(): Promise<string[]>;
  close(): Promise<void>;
}

export type HarnessOptions = Partial<SmtpListenerOptions> & { filters?: IpFilter[] };

/**
 * A listener on 127.0.0.1 (unless told otherwise) whose accept() writes the message to a file
 * in a temporary directory, fsyncs it and resolves, and removes the file when the message
 * stream fails: what the spool does, in small.
 */
export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), "receiptd-smtp-"));
  const stored: StoredMessage[] = [];
  const events: SmtpEvent[] = [];
  const { filters, ...rest } = options;
  const policy: TestPolicy = { ruleSet: RULES, filters: compileFilters(filters ?? []) };
  const accept = async (session: AcceptedSession, body: AsyncIterable<Buffer>): Promise<void> => {
    const path = join(dir, session.messageId);
    const file = await open(path, "wx");
    const chunks: Buffer[] = [];
    try {
      for await (const chunk of body) {
        chunks.push(chunk);
        await file.write(chunk);
      }
      await file.sync();
    } catch (error) {
      await file.close();
      await unlink(path);
      throw error;
    }
    await file.close();
    // As the daemon's actions see it: the receipt headers made from the session on top of what the client sent.
    const made = storedMessage({ mailFrom: session.mailFrom, recipients: session.recipients }, Buffer.concat(chunks), {
      messageId: session.messageId,
      receivedAt: session.receivedAt,
      client: session.client,
      hostname: rest.hostname ?? HOSTNAME,
      scan: "DISABLED",
      auth: { headers: [] },
    });
    stored.push({ session, message: Buffer.concat([prependedHeaderBytes(await made.headers), made.body]) });
  };
  const listener = await SmtpListener.start({
    listen: [{ host: "127.0.0.1", port: 0 }],
    hostname: HOSTNAME,
    policy: { ruleSet: () => policy.ruleSet, identities: () => IDENTITIES, filters: () => policy.filters },
    random: (n) => randomBytes(n),
    clock: () => FIXED_DATE,
    reverseDns: false,
    accept,
    onEvent: (event) => events.push(event),
    ...rest,
  }).catch(async (error: unknown) => {
    await rm(dir, { recursive: true, force: true });
    throw error;
  });
  return {
    listener,
    port: listener.addresses()[0]?.port ?? 0,
    policy,
    stored,
    events,
    spoolFiles: () => readdir(dir),
    async close() {
      await listener.close(0);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Reads a message stream to its end, as the spool would; the number of bytes. */
export async function consume(body: AsyncIterable<Buffer>): Promise<number> {
  let bytes = 0;
  for await (const chunk of body) bytes += chunk.length;
  return bytes;
}

let certificate: Promise<{ key: string; cert: string }> | undefined;

/** A self-signed certificate for the test hostname, made once per test file. */
export function testCertificate(): Promise<{ key: string; cert: string }> {
  certificate ??= generate([{ name: "commonName", value: HOSTNAME }], { keySize: 2048 }).then((pems) => ({
    key: pems.private,
    cert: pems.cert,
  }));
  return certificate;
}

/** Waits until `predicate` holds, polling; for effects that follow a socket event by a tick. */
export async function eventually(predicate: () => boolean, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A listener and raw clients per test, all closed after each test: call once at the top of a
 * test file.
 */
export function harnessPerTest(): {
  start(options?: HarnessOptions): Promise<Harness>;
  connect(port: number, host?: string, options?: { tls?: boolean; localAddress?: string }): Promise<RawSmtp>;
} {
  let harness: Harness | undefined;
  const clients: RawSmtp[] = [];
  afterEach(async () => {
    for (const client of clients.splice(0)) client.destroy();
    await harness?.close();
    harness = undefined;
  });
  return {
    async start(options = {}) {
      harness = await startHarness(options);
      return harness;
    },
    async connect(port, host = "127.0.0.1", options = {}) {
      const client = await RawSmtp.connect(port, host, options);
      clients.push(client);
      return client;
    },
  };
}
