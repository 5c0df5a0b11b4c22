// The Haraka peer: Haraka from the npm registry, installed into a temporary directory, one
// process (nodes=0), accepting the bench domain (rcpt_to.in_host_list) and queueing with a
// small plugin that fsyncs each message to a file before answering 250.
import { spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, openSync, closeSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { lastLines, onCleanup, pollUntil, progress, removeOnExit, run, sleep } from "./util.mjs";
import { smtpAnswers } from "./probe.mjs";

const PLUGIN = fileURLToPath(new URL("./haraka-fsync-queue.cjs", import.meta.url));

/** npm's own variables from `npm run` would point the nested install at this project. */
function cleanEnv() {
  return Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key)));
}

/**
 * Installs Haraka into `<scratch>/haraka` (or reuses BENCH_HARAKA_DIR, a directory where
 * `npm install Haraka` was already run, to save the download on repeated runs).
 */
async function installHaraka(scratch) {
  const reuse = process.env.BENCH_HARAKA_DIR;
  if (reuse && existsSync(join(reuse, "node_modules", "Haraka", "bin", "haraka"))) return reuse;
  const dir = join(scratch, "haraka");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "receiptd-bench-haraka", private: true }));
  progress("installing Haraka from the npm registry (npm install Haraka)");
  const result = await run("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error", "Haraka"], {
    cwd: dir,
    env: cleanEnv(),
    timeoutMs: 600_000,
  });
  if (result.code !== 0 || !existsSync(join(dir, "node_modules", "Haraka", "bin", "haraka"))) {
    throw new Error(`npm install Haraka failed${result.timedOut ? " (timed out)" : ""}:\n${lastLines(result.output)}`);
  }
  return dir;
}

export async function startHaraka(scratch, port) {
  const installDir = await installHaraka(scratch);
  const bin = join(installDir, "node_modules", "Haraka", "bin", "haraka");
  const version = JSON.parse(readFileSync(join(installDir, "node_modules", "Haraka", "package.json"), "utf8")).version;
  const dir = join(scratch, "haraka-instance");
  const spool = join(scratch, "haraka-spool");
  const remove = removeOnExit(dir);
  const removeSpool = removeOnExit(spool);
  mkdirSync(spool, { recursive: true });

  const init = await run(process.execPath, [bin, "-i", dir], { timeoutMs: 60_000 });
  if (init.code !== 0) throw new Error(`haraka -i failed:\n${lastLines(init.output)}`);
  const config = join(dir, "config");
  // One process, like our daemon; Haraka's other defaults (logging at info, limits) stay.
  writeFileSync(join(config, "smtp.ini"), `listen=127.0.0.1:${port}\nnodes=0\n`);
  writeFileSync(join(config, "plugins"), "bench_fsync_queue\nrcpt_to.in_host_list\n");
  writeFileSync(join(config, "host_list"), "bench.example\n");
  writeFileSync(join(config, "me"), "bench-haraka.localdomain\n");
  mkdirSync(join(dir, "plugins"), { recursive: true });
  copyFileSync(PLUGIN, join(dir, "plugins", "bench_fsync_queue.js"));

  // Haraka's log goes to a file, not through a pipe to us, so that the bench process does no
  // work on its behalf.
  const logFile = join(dir, "haraka.log");
  const logFd = openSync(logFile, "a");
  const child = spawn(process.execPath, [bin, "-c", dir], {
    env: { ...cleanEnv(), BENCH_HARAKA_SPOOL: spool },
    stdio: ["ignore", logFd, logFd],
  });
  closeSync(logFd);
  const forgetKill = onCleanup(() => child.kill("SIGKILL"));
  let exited = null;
  child.once("exit", (code, signal) => (exited = { code, signal }));
  const log = () => lastLines(readFileSync(logFile, "utf8"));

  const up = await pollUntil(() => exited || smtpAnswers(port), { timeoutMs: 60_000, intervalMs: 200 });
  if (up !== true) {
    child.kill("SIGKILL");
    forgetKill();
    remove();
    removeSpool();
    throw new Error(`Haraka did not start${exited ? ` (exited with ${exited.code ?? exited.signal})` : ""}:\n${log()}`);
  }

  const spoolCount = () => readdirSync(spool).filter((name) => name.endsWith(".eml")).length;
  let removedSoFar = 0;
  return {
    name: "haraka",
    label: `Haraka ${version}`,
    port,
    pid: child.pid,
    async beginRun() {
      if (exited) throw new Error(`Haraka exited (${exited.code ?? exited.signal}):\n${log()}`);
    },
    /** Each accepted message is one fsync'd file (counted since start: files are removed after each run). */
    async accepted() {
      return removedSoFar + spoolCount();
    },
    /** Nothing runs behind Haraka's 250 here: the queue plugin is the end of the line. */
    async drain() {
      return null;
    },
    async endRun() {
      // The files only prove acceptance; removing them keeps the disk from filling over the rounds.
      for (const name of readdirSync(spool)) {
        rmSync(join(spool, name), { force: true });
        if (name.endsWith(".eml")) removedSoFar++;
      }
    },
    async stop() {
      if (!exited) {
        child.kill("SIGTERM");
        await pollUntil(() => exited, { timeoutMs: 10_000, intervalMs: 100 });
        if (!exited) child.kill("SIGKILL");
        await sleep(100);
      }
      forgetKill();
      remove();
      removeSpool();
    },
  };
}
