import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The files in a running daemon's queue/ less the empty ones its spool creates ahead for the
 * next messages: what is left is message content.
 */
export async function queuedContent(queue: string): Promise<string[]> {
  const names: string[] = [];
  for (const name of (await readdir(queue)).sort()) {
    if ((await stat(join(queue, name))).size > 0) names.push(name);
  }
  return names;
}

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const BIN = join(ROOT, "dist/cli/main.js");

export interface DaemonProcess {
  child: ChildProcess;
  dir: string;
  /** The first listener's port. */
  smtpPort: number;
  /** Every listener, as the daemon reported it. */
  listeners: { host: string; port: number; tls: boolean }[];
  adminPort: number | null;
  /** The SES API's port, or null when it is off. */
  apiPort: number | null;
  /** Every JSON log line so far. */
  logs: Record<string, unknown>[];
  /** Resolves with the first log line that satisfies `match`, waiting for it if need be. */
  waitForLog(match: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** The exit code (or signal) once it has ended. */
  exited: Promise<number | string>;
  kill(signal: NodeJS.Signals): Promise<number | string>;
}

/**
 * `receiptd serve` as users run it: the built binary in its own process, with a config file
 * written to `dir`, listening on free ports that it reports in its start-up log line.
 */
export async function startDaemonProcess(
  config: Record<string, unknown>,
  dir: string,
  env: NodeJS.ProcessEnv = {},
): Promise<DaemonProcess> {
  const configFile = join(dir, "receiptd.json");
  await writeFile(configFile, JSON.stringify(config, null, 2));
  const child = spawn(process.execPath, [BIN, "serve", "--config", configFile], {
    cwd: dir,
    env: { ...process.env, RECEIPTD_LOG_FORMAT: "json", RECEIPTD_LOG_LEVEL: "debug", ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  const logs: Record<string, unknown>[] = [];
  const waiters: { match: (line: Record<string, unknown>) => boolean; resolve: (line: Record<string, unknown>) => void }[] = [];
  let buffered = "";
  let stderrText = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (chunk: string) => {
    stderrText += chunk;
    buffered += chunk;
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const text = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(text) as Record<string, unknown>;
      } catch {
        continue;
      }
      logs.push(line);
      for (const waiter of [...waiters]) {
        if (waiter.match(line)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(line);
        }
      }
    }
  });
  const exited = new Promise<number | string>((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal ?? -1)));

  const waitForLog = (match: (line: Record<string, unknown>) => boolean, timeoutMs = 15_000) => {
    const found = logs.find(match);
    if (found) return Promise.resolve(found);
    return new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no such log line within ${timeoutMs} ms; stderr:\n${stderrText}`)), timeoutMs);
      waiters.push({
        match,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
      });
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`the daemon exited (${code}) before the log line; stderr:\n${stderrText}`));
      });
    });
  };

  const started = await waitForLog((line) => line.event === "daemon.started");
  const listeners = (started.smtp as string[]).map((text) => {
    const tls = text.endsWith(" (TLS)");
    const address = text.replace(/ \(TLS\)$/, "");
    const colon = address.lastIndexOf(":");
    return { host: address.slice(0, colon), port: Number(address.slice(colon + 1)), tls };
  });
  const admin = started.admin as string | null;
  const api = started.api as string | null;
  return {
    child,
    dir,
    smtpPort: listeners[0]!.port,
    listeners,
    adminPort: admin ? Number(admin.split(":").at(-1)) : null,
    apiPort: api ? Number(api.split(":").at(-1)) : null,
    logs,
    waitForLog,
    exited,
    kill(signal) {
      child.kill(signal);
      return exited;
    },
  };
}

export async function scratch(prefix: string): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** A config for tests: loopback on free ports, no DNS, everything under `dir`. */
export function testConfig(dir: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    hostname: "mx.receiptd.test",
    dataDir: join(dir, "data"),
    rules: join(ROOT, "rules/example.json"),
    local: {
      lambdaHandlers: {
        "arn:aws:lambda:us-east-1:123456789012:function:triage-abuse": join(ROOT, "rules/handlers/triage-abuse.mjs"),
        "arn:aws:lambda:us-east-1:123456789012:function:index-message": join(ROOT, "rules/handlers/index-message.mjs"),
      },
    },
    smtp: { listen: [{ host: "127.0.0.1", port: 0 }], reverseDns: false },
    authentication: { enabled: false },
    admin: { host: "127.0.0.1", port: 0 },
    api: { host: "127.0.0.1", port: 0 },
    shutdownGraceMs: 5000,
    ...extra,
  };
}

/** A one-rule set (S3 to bucket "live") for `recipients`: what the reload tests rewrite. */
export function liveRuleSet(recipients: string[]): string {
  return JSON.stringify({
    Metadata: { Name: "live" },
    Rules: [{ Name: "keep", Enabled: true, Recipients: recipients, Actions: [{ S3Action: { BucketName: "live" } }] }],
  });
}

/** A loopback TCP port free a moment ago, for a configuration that must name its port. */
export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}
