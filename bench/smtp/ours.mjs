// Our side: `receiptd serve` as a child process, started afresh for every run with a
// configuration and rule set written to a temporary directory, ready once GET /readyz on
// its admin port answers 200, and stopped with SIGTERM afterwards.
import { spawn } from "node:child_process";
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseConfig } from "../../dist/config/config.js";
import { alive, freePort, lastLines, memoryOfTree, onCleanup, pollUntil, removeOnExit } from "./util.mjs";

// BENCH_RECEIPTD_CLI measures another build (say, a baseline worktree's dist/cli/main.js).
const CLI = process.env.BENCH_RECEIPTD_CLI ?? fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));
/** smtp.processes: SMTP acceptor processes beside the one that processes (1: a single process). */
export const SMTP_PROCESSES = Number(process.env.BENCH_SMTP_PROCESSES ?? 1);

/** SES rule set JSON: one rule for the bench domain; S3 + SNS on the local back end, or nothing. */
function ruleSet(withActions) {
  return {
    Metadata: { Name: "receiptd-bench", CreatedTimestamp: "2026-01-01T00:00:00.000Z" },
    Rules: [
      {
        Name: "bench",
        Enabled: true,
        TlsPolicy: "Optional",
        Recipients: ["bench.example"],
        Actions: withActions
          ? [
              { S3Action: { BucketName: "receiptd-bench", ObjectKeyPrefix: "inbound/" } },
              { SNSAction: { TopicArn: "arn:aws:sns:us-east-1:123456789012:receiptd-bench", Encoding: "UTF-8" } },
            ]
          : [],
        ScanEnabled: false,
      },
    ],
  };
}

function configDoc(dir, smtpPort, adminPort) {
  return {
    hostname: "bench-receiptd.localdomain",
    dataDir: join(dir, "data"),
    backend: "local",
    // Not strict: SES would refuse the SNS action for the 1 MB workload (150 KB limit), and a
    // failing action would measure the retry path instead of the back end.
    strict: false,
    rules: join(dir, "rules.json"),
    identities: ["bench.example"],
    authentication: { enabled: false },
    smtp: {
      listen: [{ host: "127.0.0.1", port: smtpPort }],
      reverseDns: false,
      maxConnectionsPerIp: 1000,
      maxConnections: 2000,
      ...(SMTP_PROCESSES === 1 ? {} : { processes: SMTP_PROCESSES }),
    },
    spool: { dir: join(dir, "spool") },
    admin: { host: "127.0.0.1", port: adminPort },
    shutdownGraceMs: 15_000,
  };
}

async function httpGet(port, path, retried = false) {
  try {
    const response = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(5000) });
    return { status: response.status, text: await response.text() };
  } catch (error) {
    // A kept-alive connection that the server closed just as it was reused: once more, anew.
    if (!retried && error.cause?.code === "UND_ERR_SOCKET") return httpGet(port, path, true);
    throw error;
  }
}

/** A Prometheus sample without labels, or NaN when the metric is absent. */
function sample(text, name) {
  const match = new RegExp(`^${name}(?:\\{\\})? ([0-9.eE+-]+)$`, "m").exec(text);
  return match ? Number(match[1]) : NaN;
}

/**
 * A server object for one mode ("actions" or "accept"): beginRun starts the daemon, endRun
 * stops it and removes its data (the 1 MB workload leaves gigabytes behind). With `keep`
 * (the bench's default) one daemon per mode serves every run until stop(), as a production
 * MX and the peers' long-running instances do, and its memory shows from workload to
 * workload. Its finished messages and the back end's objects stay until the bench ends, or,
 * when disk space is short, are deleted after each run once its backlog is worked off (see
 * KEEP_FINISHED_MIN_FREE).
 */
export function oursServer(scratch, mode, { keep = false } = {}) {
  let daemon = null;
  let runs = 0;
  const server = {
    name: mode === "actions" ? "ours-actions" : "ours-accept",
    label: `${mode === "actions" ? "receiptd, S3+SNS actions (local)" : "receiptd, acceptance only"}${SMTP_PROCESSES > 1 ? `, ${SMTP_PROCESSES} acceptors` : ""}`,
    port: null,
    get pid() {
      return daemon?.child.pid;
    },
    async beginRun() {
      if (daemon && keep) return;
      daemon = await startDaemon(join(scratch, `${server.name}-${++runs}`), mode === "actions");
      server.port = daemon.smtpPort;
    },
    async metrics() {
      return (await httpGet(daemon.adminPort, "/metrics")).text;
    },
    async accepted() {
      const value = sample(await server.metrics(), "receiptd_smtp_messages_accepted_total");
      if (!Number.isFinite(value)) throw new Error("/metrics has no receiptd_smtp_messages_accepted_total");
      return value;
    },
    /**
     * Waits until every accepted message went through its rules (spool depth 0): true, false
     * on timeout, null when the daemon does not export the depth.
     */
    async drain(timeoutMs) {
      let missing = false;
      const done = await pollUntil(
        async () => {
          const depth = sample(await server.metrics(), "receiptd_spool_depth");
          if (!Number.isFinite(depth)) missing = true;
          return missing || depth === 0;
        },
        { timeoutMs, intervalMs: 200 },
      );
      return missing ? null : Boolean(done);
    },
    memory() {
      return daemon ? memoryOfTree(daemon.child.pid) : { rss: NaN, peak: NaN };
    },
    async endRun() {
      if (!daemon) return null;
      // A kept daemon that died during the run is reported, and the next run starts a new one.
      if (keep && !daemon.exited()) {
        if (freeBytes(daemon.dir) < KEEP_FINISHED_MIN_FREE) removeFinished(daemon.dir);
        return null;
      }
      const stopped = await daemon.stop();
      daemon = null;
      return stopped;
    },
    async stop() {
      if (!daemon) return null;
      const stopped = await daemon.stop();
      daemon = null;
      return stopped;
    },
  };
  return server;
}

/**
 * Below this much free space a kept daemon's finished messages are deleted after each run;
 * above it they stay until the bench ends. Deleting gigabytes between runs slowed the runs that
 * followed on these machines: on a file system mounted with `discard`, on a virtual disk,
 * writing into just-freed blocks was markedly slower for a while (one session's rate fell from
 * about 570 to 350 msgs/s after the 8,000 files of earlier runs were deleted, and not when they
 * were only moved aside), and that cost would fall on whichever server ran next.
 */
const KEEP_FINISHED_MIN_FREE = 40 * 2 ** 30;

function freeBytes(path) {
  const stats = statfsSync(path);
  return stats.bavail * stats.bsize;
}

/**
 * What a kept daemon no longer needs once its spool is empty: the messages in spool/done
 * (their trace log stays) and every object the local back end wrote.
 */
function removeFinished(dir) {
  const done = join(dir, "spool", "done");
  for (const name of listed(done)) {
    if (!name.startsWith("traces-")) rmSync(join(done, name), { recursive: true, force: true });
  }
  for (const entry of listed(join(dir, "data"), { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) rmSync(join(entry.parentPath ?? entry.path, entry.name), { force: true });
  }
}

/** readdirSync, with nothing for a directory that was never made (no action wrote yet). */
function listed(path, options) {
  try {
    return readdirSync(path, options);
  } catch (error) {
    if (error.code === "ENOENT") return [];
    throw error;
  }
}

async function startDaemon(dir, withActions) {
  mkdirSync(dir, { recursive: true });
  const remove = removeOnExit(dir);
  const smtpPort = await freePort();
  const adminPort = await freePort();
  const doc = configDoc(dir, smtpPort, adminPort);
  // Checked here with the project's own parser, so that a configuration the daemon would
  // refuse shows up as such rather than as a daemon that never gets ready.
  parseConfig(doc, { source: "bench config", baseDir: dir, env: {} });
  const configPath = join(dir, "config.json");
  writeFileSync(configPath, `${JSON.stringify(doc, null, 2)}\n`);
  writeFileSync(join(dir, "rules.json"), `${JSON.stringify(ruleSet(withActions), null, 2)}\n`);

  const logFile = join(dir, "receiptd.log");
  const logFd = openSync(logFile, "a");
  // RECEIPTD_* variables of the caller's shell would override the bench configuration.
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("RECEIPTD_")));
  const child = spawn(process.execPath, [CLI, "serve", "--config", configPath], { env, stdio: ["ignore", logFd, logFd] });
  closeSync(logFd);
  const forgetKill = onCleanup(() => child.kill("SIGKILL"));
  let exited = null;
  const exit = new Promise((resolve) => child.once("exit", (code, signal) => resolve((exited = { code, signal }))));
  const log = () => lastLines(readFileSync(logFile, "utf8"));

  const ready = await pollUntil(
    async () => {
      if (exited) return "exited";
      try {
        return (await httpGet(adminPort, "/readyz")).status === 200 ? "ready" : null;
      } catch {
        return null;
      }
    },
    { timeoutMs: 30_000, intervalMs: 100 },
  );
  if (ready !== "ready") {
    child.kill("SIGKILL");
    forgetKill();
    const text = log();
    remove();
    const how = exited ? `exited with ${exited.code ?? exited.signal}` : "did not answer 200 on GET /readyz within 30 s";
    throw new Error(`\`node ${CLI} serve --config <file>\` ${how}:\n${text.replace(/^/gm, "    ")}`);
  }

  return {
    child,
    dir,
    smtpPort,
    adminPort,
    exited: () => exited,
    /** SIGTERM, then the grace period; SIGKILL only if that passes. Returns how it ended. */
    async stop() {
      if (!exited && alive(child.pid)) child.kill("SIGTERM");
      const ended = await Promise.race([exit, new Promise((resolve) => setTimeout(resolve, 25_000, null))]);
      if (!ended) child.kill("SIGKILL");
      const result = ended ?? (await exit);
      forgetKill();
      const text = log();
      remove();
      return { ...result, killed: !ended, log: text };
    },
  };
}
