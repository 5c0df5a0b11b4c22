// Small helpers shared by the SMTP bench: logging, clean-up on any exit, free ports,
// bounded child processes, polling with a deadline, and statistics.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { delimiter, join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";

export { sleep };

const started = performance.now();

/** Progress goes to stderr, so that stdout holds only the results. */
export function progress(message) {
  const seconds = ((performance.now() - started) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`[${seconds}s] ${message}\n`);
}

// Clean-up actions run in reverse order of registration, exactly once: on a normal end,
// on an uncaught error and on SIGINT/SIGTERM. They must be synchronous, because the 'exit'
// event does not wait for promises; each returns a function that unregisters it.
const cleanups = [];
let cleaningUp = false;

export function onCleanup(action) {
  const entry = { action };
  cleanups.push(entry);
  return () => {
    const i = cleanups.indexOf(entry);
    if (i >= 0) cleanups.splice(i, 1);
  };
}

export function runCleanups() {
  if (cleaningUp) return;
  cleaningUp = true;
  while (cleanups.length > 0) {
    const { action } = cleanups.pop();
    try {
      action();
    } catch (error) {
      process.stderr.write(`clean-up step failed: ${error.message}\n`);
    }
  }
  cleaningUp = false;
}

process.on("exit", runCleanups);
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(signal, () => {
    process.stderr.write(`\n${signal}: stopping the servers and removing temporary files\n`);
    runCleanups();
    process.exit(130);
  });
}

/** Removes a directory now and, should the process die first, on exit. */
export function removeOnExit(dir) {
  const forget = onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  return () => {
    forget();
    rmSync(dir, { recursive: true, force: true });
  };
}

/** A port that was free a moment ago on 127.0.0.1 (the server that gets it binds it soon after). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** The absolute path of a program on PATH, or in the sbin directories that a non-login PATH may lack. */
export function which(program) {
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/sbin", "/sbin", "/usr/local/sbin"];
  for (const dir of dirs) {
    if (dir && existsSync(join(dir, program))) return join(dir, program);
  }
  return null;
}

/**
 * Runs a program to its end with a time limit, keeping the last 64 KB of its output.
 * The child is killed on timeout and if the bench itself exits first.
 */
export function run(command, args, { timeoutMs, env, cwd, input } = {}) {
  return new Promise((resolve) => {
    const start = performance.now();
    const child = spawn(command, args, { env, cwd, stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"] });
    const forget = onCleanup(() => child.kill("SIGKILL"));
    let output = "";
    const keep = (chunk) => {
      output = (output + chunk.toString("utf8")).slice(-65536);
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    if (input !== undefined) child.stdin.end(input);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs ?? 600_000);
    const finish = (code, signal, error) => {
      clearTimeout(timer);
      forget();
      resolve({ code, signal, output: error ? `${output}${error.message}\n` : output, timedOut, ms: performance.now() - start });
    };
    child.once("error", (error) => finish(null, null, error));
    child.once("close", (code, signal) => finish(code, signal));
  });
}

/** Synchronous variant for set-up steps that must finish before anything else happens. */
export function runSync(command, args, { timeoutMs = 600_000, env, input } = {}) {
  const result = spawnSync(command, args, { env, input, encoding: "utf8", timeout: timeoutMs, maxBuffer: 64 * 2 ** 20 });
  return { code: result.status, output: `${result.stdout ?? ""}${result.stderr ?? ""}${result.error ? result.error.message : ""}` };
}

/** Calls `check` every `intervalMs` until it returns a truthy value or the deadline passes (then null). */
export async function pollUntil(check, { timeoutMs, intervalMs = 100 }) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (performance.now() >= deadline) return null;
    await sleep(intervalMs);
  }
}

/** Resident and peak resident memory of a process in MiB, from /proc (Linux). */
export function memoryOf(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kib = (field) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
    return { rss: kib("VmRSS") / 1024, peak: kib("VmHWM") / 1024 };
  } catch {
    return { rss: NaN, peak: NaN };
  }
}

/**
 * memoryOf summed over a process and its children (receiptd's acceptor processes): resident now,
 * and the sum of each one's own peak.
 */
export function memoryOfTree(pid) {
  const pids = [pid];
  try {
    pids.push(...readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").split(" ").filter(Boolean).map(Number));
  } catch {
    // gone, or no children file on this kernel: the process alone
  }
  const each = pids.map(memoryOf);
  return { rss: each.reduce((sum, m) => sum + m.rss, 0), peak: each.reduce((sum, m) => sum + m.peak, 0), processes: pids.length };
}

/** Whether a pid still names a live process (a zombie counts as gone). */
export function alive(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/^\d+ \(.*\) [ZX] /s.test(stat);
  } catch {
    return false;
  }
}

/** Nearest-rank percentile of an unsorted list; NaN when empty. */
export function percentile(values, p) {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

export function median(values) {
  const finite = values.filter(Number.isFinite);
  if (finite.length === 0) return NaN;
  const sorted = [...finite].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export function lastLines(text, count = 15) {
  return text.trimEnd().split("\n").slice(-count).join("\n");
}
