// The spool lock: one owner at a time, and a stale lock (its owner is dead) taken over by exactly
// one of the processes that find it at once.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, expect, it } from "vitest";
import { Spool } from "../../src/spool/spool.js";
import { SpoolLocked } from "../../src/spool/lock.js";
import { scratchDir } from "./helpers.js";

const CHILD = fileURLToPath(new URL("./fixtures/lock-child.mjs", import.meta.url));
const SLOW_RM = fileURLToPath(new URL("./fixtures/slow-rm.mjs", import.meta.url));
const CONTENDERS = 8;

let dir: string;
let remove: () => Promise<void>;
beforeEach(async () => {
  ({ dir, remove } = await scratchDir());
});
afterEach(async () => {
  await remove();
});

/** The PID of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
  await once(child, "exit");
  return child.pid!;
}

it("is taken over by exactly one of several processes that find it stale at the same instant", async () => {
  // Each round is a fresh stale lock; a second round, because a race may not show every time.
  for (let round = 0; round < 2; round++) {
    const spool = join(dir, `round-${round}`);
    await mkdir(spool, { recursive: true });
    await writeFile(join(spool, "lock"), `${await deadPid()}\n`);
    const startAt = Date.now() + 1500;
    const children = Array.from({ length: CONTENDERS }, () => {
      const child = spawn(process.execPath, ["--import", SLOW_RM, CHILD, spool, String(startAt)], { stdio: ["pipe", "pipe", "inherit"] });
      let output = "";
      child.stdout.setEncoding("utf8");
      const answered = new Promise<string>((resolve) => {
        child.stdout.on("data", (chunk: string) => {
          output += chunk;
          if (output.endsWith("\n")) resolve(output.trim());
        });
      });
      return { child, answered };
    });
    try {
      const answers = await Promise.all(children.map(({ answered }) => answered));
      const winners = children.filter((_, i) => answers[i] === "won");
      expect(answers.filter((answer) => answer === "won")).toHaveLength(1);
      const winner = winners[0]!.child.pid!;
      expect(answers.filter((answer) => answer !== "won")).toEqual(Array(CONTENDERS - 1).fill(`locked ${winner}`));
      expect(Number.parseInt(await readFile(join(spool, "lock"), "utf8"), 10)).toBe(winner);
      expect((await readdir(spool)).filter((name) => name.startsWith("lock"))).toEqual(["lock"]);
    } finally {
      for (const { child } of children) child.stdin.end();
      await Promise.all(children.map(({ child }) => (child.exitCode === null ? once(child, "exit") : null)));
    }
  }
}, 30_000);

it("refuses while its owner lives, and clears a takeover cut short by its taker's death", async () => {
  const spool = await Spool.open({ dir, fsync: false });
  await writeFile(join(dir, "lock"), `${process.ppid}\n`);
  const refused = Spool.open({ dir, fsync: false });
  await expect(refused).rejects.toBeInstanceOf(SpoolLocked);
  await expect(refused).rejects.toMatchObject({ owner: process.ppid });

  await writeFile(join(dir, "lock"), `${await deadPid()}\n`);
  await writeFile(join(dir, "lock.takeover"), `${await deadPid()}\n`);
  const reopened = await Spool.open({ dir, fsync: false });
  expect((await readdir(dir)).filter((name) => name.startsWith("lock"))).toEqual(["lock"]);
  expect(await readFile(join(dir, "lock"), "utf8")).toBe(`${process.pid}\n`);
  await reopened.close();
  await spool.close();
  expect(await readdir(dir)).not.toContain("lock");
});
