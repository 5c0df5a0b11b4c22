// What the daemon decides at the end of DATA, before its 250 (docs/behaviour.md §4), and how it
// times that: the built daemon in its own process, raw SMTP clients over real sockets.
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { LISTENER_REPLIES } from "../../src/smtp/index.js";
import { queuedContent, scratch, startDaemonProcess, testConfig } from "../helpers/daemon.js";
import type { DaemonProcess } from "../helpers/daemon.js";
import { RawSmtp } from "../helpers/smtp-client.js";

// The issue asks for 100 ms: the typical (median) greeting is held to that, the slowest one
// to a margin for a loaded test machine. The old code kept the event loop blocked for seconds.
const GREETING_DEADLINE_MS = 500;
const TYPICAL_GREETING_MS = 100;

let work: { dir: string; remove(): Promise<void> };
const daemons: DaemonProcess[] = [];

beforeAll(async () => {
  work = await scratch("receiptd-data-limits-");
});
afterEach(async () => {
  await Promise.all(daemons.splice(0).map((d) => d.kill("SIGKILL")));
});
afterAll(async () => {
  await work.remove();
});

async function start(name: string, extra: Record<string, unknown> = {}): Promise<DaemonProcess> {
  const dir = join(work.dir, name);
  await mkdir(dir, { recursive: true });
  const daemon = await startDaemonProcess(testConfig(dir, extra), dir);
  daemons.push(daemon);
  return daemon;
}

async function inData(port: number): Promise<RawSmtp> {
  const client = await RawSmtp.connect(port);
  expect(await client.reply()).toMatch(/^220 /);
  await client.transaction("sender@example.org", ["info@example.com"]);
  return client;
}

/** How long a new client waits for its 220; fails past the deadline. */
async function greetingMs(port: number, deadlineMs: number): Promise<number> {
  const started = performance.now();
  const client = await RawSmtp.connect(port);
  try {
    expect(await client.reply(deadlineMs)).toMatch(/^220 /);
    return performance.now() - started;
  } finally {
    client.destroy();
  }
}

/** Sends `content` as DATA and waits for the answer, other clients and /healthz answered all the while. */
async function answerWhileOthersAreGreeted(daemon: DaemonProcess, content: string, deadlineMs = GREETING_DEADLINE_MS): Promise<string> {
  const sender = await inData(daemon.smtpPort);
  sender.write(`${content}.\r\n`);
  let answer: string | null = null;
  const answered = sender.reply(20_000).then((reply) => (answer = reply));
  // Awaited below; a probe failing first must not leave its rejection unhandled.
  answered.catch(() => undefined);
  const greetings: number[] = [];
  // At least a few probes, the later ones after the whole message is in the daemon.
  while (answer === null || greetings.length < 3) {
    greetings.push(await greetingMs(daemon.smtpPort, deadlineMs));
    const health = await fetch(`http://127.0.0.1:${daemon.adminPort}/healthz`, { signal: AbortSignal.timeout(deadlineMs) });
    expect(health.status).toBe(200);
  }
  expect(Math.max(...greetings)).toBeLessThan(deadlineMs);
  const sorted = [...greetings].sort((a, b) => a - b);
  expect(sorted[Math.floor(sorted.length / 2)]).toBeLessThan(TYPICAL_GREETING_MS);
  return answered;
}

describe("header block limits, decided before the 250", () => {
  it("refuses a Subject folded over 60,000 lines with 552 at once, greeting other clients meanwhile", async () => {
    const daemon = await start("folded", { authentication: { enabled: true, dnsTimeoutMs: 200 } });
    const content = `From: sender@example.org\r\nSubject: x\r\n${" folded\r\n".repeat(60_000)}\r\nbody\r\n`;
    expect(await answerWhileOthersAreGreeted(daemon, content)).toBe(LISTENER_REPLIES.headerTooLarge);
    expect(await queuedContent(join(daemon.dir, "data", "spool", "queue"))).toEqual([]);
  });

  it("refuses a header block over 1 MiB with 552 instead of answering 250 and dead-lettering it", async () => {
    const daemon = await start("large", { authentication: { enabled: true, dnsTimeoutMs: 200 } });
    const content = `From: sender@example.org\r\n${`X-Pad: ${"p".repeat(1990)}\r\n`.repeat(600)}\r\nbody\r\n`;
    expect(await answerWhileOthersAreGreeted(daemon, content)).toBe(LISTENER_REPLIES.headerTooLarge);
    expect(await queuedContent(join(daemon.dir, "data", "spool", "queue"))).toEqual([]);
    // Ordinary messages are accepted as before.
    const client = await inData(daemon.smtpPort);
    client.write("From: sender@example.org\r\nSubject: small\r\n\r\nbody\r\n.\r\n");
    expect(await client.reply()).toMatch(/^250 Ok /);
  });
});

describe("authentication of a hostile header block within the limits", () => {
  // The issue's deadline. On the daemon's thread, mailauth took 0.6 to 0.7 s over each of these.
  const AUTH_GREETING_DEADLINE_MS = 150;
  const signedBy = "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=sel; h=from; bh=AAAA; b=AAAA;";

  it.each([
    // Received of short words: mailauth's parseReceived rebuilds the value per word.
    ["received", "50 Received fields of 8 KB", `Received: from ${"a ".repeat(3_990)}by y; Mon, 1 Jan 2024\r\n`.repeat(50)],
    ["dkim", "1 MB of DKIM-Signature tags", `${signedBy}${" t=1;".repeat(1_600)}\r\n`.repeat(120)],
  ])("greets other clients and answers /healthz while it authenticates $1, then accepts it", async (dir, _name, fields) => {
    const daemon = await start(`hostile-${dir}`, { authentication: { enabled: true, dnsTimeoutMs: 200 } });
    const content = `${fields}From: sender@example.org\r\nSubject: hostile\r\n\r\nbody\r\n`;
    expect(await answerWhileOthersAreGreeted(daemon, content, AUTH_GREETING_DEADLINE_MS)).toMatch(/^250 Ok /);
  });
});

describe("receiptd_smtp_accept_seconds", () => {
  it("starts at the final dot: a client pausing a second mid-body is not counted", async () => {
    const daemon = await start("pause");
    const client = await inData(daemon.smtpPort);
    client.write("From: sender@example.org\r\nSubject: pause\r\n\r\nfirst half\r\n");
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    client.write("second half\r\n.\r\n");
    expect(await client.reply()).toMatch(/^250 Ok /);
    const metrics = await (await fetch(`http://127.0.0.1:${daemon.adminPort}/metrics`)).text();
    expect(metrics).toMatch(/^receiptd_smtp_accept_seconds_count 1$/m);
    const sum = Number(/^receiptd_smtp_accept_seconds_sum (\S+)$/m.exec(metrics)?.[1]);
    expect(sum).toBeGreaterThan(0);
    expect(sum).toBeLessThan(0.5);
  });
});
