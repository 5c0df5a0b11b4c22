// Crash safety with real processes: a child runs the spool and processor from dist/ (built by the
// global setup) and is killed with SIGKILL, then a new one resumes.
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { readFile, readdir, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Processor } from "../../src/spool/processor.js";
import { Spool } from "../../src/spool/spool.js";
import { Events, listDir, scratchDir, scriptedExecutor } from "./helpers.js";

const CHILD = fileURLToPath(new URL("./fixtures/crash-child.mjs", import.meta.url));
const KEYS = ["first/0", "first/1", "first/2", "second/0", "second/1"];

let scratch: string;
let remove: () => Promise<void>;
let spoolDir: string;
let markers: string;
beforeEach(async () => {
  ({ dir: scratch, remove } = await scratchDir());
  spoolDir = join(scratch, "spool");
  markers = join(scratch, "markers.log");
});
afterEach(async () => {
  await remove();
});

interface Child {
  process: ChildProcess;
  lines: string[];
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function start(...args: string[]): Child {
  const child = spawn(process.execPath, [CHILD, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  const lines: string[] = [];
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (data: Buffer) => {
    stdout += data.toString();
    const parts = stdout.split("\n");
    stdout = parts.pop() ?? "";
    lines.push(...parts);
  });
  child.stderr!.on("data", (data: Buffer) => (stderr += data.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal })),
  );
  return { process: child, lines, stderr: () => stderr, exited };
}

async function until(condition: () => Promise<boolean> | boolean, what: string, child: Child): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await condition())) {
    if (child.process.exitCode !== null) throw new Error(`child exited before ${what}: ${child.stderr()}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function kill(child: Child): Promise<void> {
  child.process.kill("SIGKILL");
  expect((await child.exited).signal).toBe("SIGKILL");
}

async function markerLines(): Promise<string[]> {
  try {
    return (await readFile(markers, "utf8")).split("\n").filter((line) => line !== "");
  } catch {
    return [];
  }
}

/** `<id> <key>` of every action outcome journaled in queue/ and done/. */
async function journaled(): Promise<Set<string>> {
  const recorded = new Set<string>();
  for (const area of ["queue", "done"]) {
    for (const path of await readdir(join(spoolDir, area), { recursive: true })) {
      if (!path.endsWith(".journal")) continue;
      const id = basename(path).slice(0, 40);
      for (const line of (await readFile(join(spoolDir, area, path), "utf8")).split("\n")) {
        try {
          recorded.add(`${id} ${(JSON.parse(line) as { detail: { key: string } }).detail.key}`);
        } catch {
          // A torn last line: that action is not recorded done.
        }
      }
    }
  }
  return recorded;
}

describe("after kill -9", () => {
  it("every message completes, every action runs at least once, and none recorded done runs again", async () => {
    const count = 6;
    const first = start("run", spoolDir, markers, String(count));
    // Kill with some actions done and many to go, most likely inside a slow S3 action.
    await until(async () => (await markerLines()).length >= 12, "twelve actions", first);
    await kill(first);
    const accepted = first.lines.filter((l) => l.startsWith("accepted ")).map((l) => l.slice("accepted ".length));
    const recordedAtKill = await journaled();
    const pendingAtKill = (await readdir(join(spoolDir, "queue"))).filter((n) => n.endsWith(".msg")).length;
    expect(accepted.length).toBeGreaterThan(0);
    expect(recordedAtKill.size).toBeGreaterThan(0);
    expect(pendingAtKill).toBeGreaterThan(0);

    const second = start("resume", spoolDir, markers);
    const { code } = await second.exited;
    expect(code, second.stderr()).toBe(0);

    expect(await listDir(join(spoolDir, "queue"))).toEqual([]);
    expect(await listDir(join(spoolDir, "dead"))).toEqual([]);
    const done = new Set((await readdir(join(spoolDir, "done"), { recursive: true })).map((path) => basename(path)));
    for (const id of accepted) expect(done.has(`${id}.msg`)).toBe(true);

    const runs = new Map<string, number>();
    for (const line of await markerLines()) runs.set(line, (runs.get(line) ?? 0) + 1);
    for (const id of accepted) for (const key of KEYS) expect(runs.get(`${id} ${key}`) ?? 0, `${id} ${key}`).toBeGreaterThanOrEqual(1);
    for (const action of recordedAtKill) expect(runs.get(action), action).toBe(1);
    // Nothing ran that the rules do not have.
    for (const line of runs.keys()) expect(KEYS).toContain(line.split(" ")[1]);
  });

  it("a message killed mid-body is never processed; the ones committed are", async () => {
    const child = start("stall", spoolDir);
    await until(() => child.lines.some((l) => l.startsWith("streaming ")), "the body to stall", child);
    const committed = child.lines.find((l) => l.startsWith("committed "))!.slice("committed ".length);
    const stalled = child.lines.find((l) => l.startsWith("streaming "))!.slice("streaming ".length);
    expect((await stat(join(spoolDir, "queue", `${stalled}.msg`))).size).toBeGreaterThan(0);
    await kill(child);

    const spool = await Spool.open({ dir: spoolDir });
    expect(await listDir(join(spoolDir, "tmp"))).toEqual([]);
    expect(await listDir(join(spoolDir, "queue"))).toEqual([`${committed}.msg`]);
    expect(await spool.queue.pending()).toEqual([committed]);

    const { executor, calls } = scriptedExecutor();
    const events = new Events();
    const processor = new Processor({ spool: spool.queue, executor, hostname: "mx.example.com", sendFailureDsn: async () => undefined, onEvent: events.listener });
    const completed = events.next("message-completed", committed);
    await processor.start();
    await completed;
    expect(calls).toEqual(KEYS);
    for (const area of ["queue", "done", "dead"]) {
      expect((await readdir(join(spoolDir, area), { recursive: true })).some((path) => basename(path).startsWith(stalled))).toBe(false);
    }
  });
});
