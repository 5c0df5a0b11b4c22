import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("../..", import.meta.url));
const bin = join(root, "dist/cli/main.js");
const run = promisify(execFile);

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "receiptd-main-"));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe("receiptd", () => {
  it("--version and -v print the version of the installed package.json", async () => {
    const { version } = JSON.parse(await readFile(join(root, "package.json"), "utf8")) as { version: string };
    for (const flag of ["--version", "-v"]) {
      const { stdout, stderr } = await run(process.execPath, [bin, flag], { cwd: root });
      expect(stdout, flag).toBe(`${version}\n`);
      expect(stderr, flag).toBe("");
    }
  });

  it.each([["text", ""], ["json", "--json"]])("replay %s into `| head -1` ends quietly with exit 0 when head closes the pipe", async (name, flag) => {
    // Far more output than a pipe holds, so that receiptd is still writing when head exits.
    const inputs = Array.from({ length: 80 }, () => "samples").join(" ");
    const status = join(scratch, `${name}.status`);
    const stderr = join(scratch, `${name}.stderr`);
    const script = `{ '${process.execPath}' '${bin}' replay ${inputs} --rules rules/example.json ${flag} 2>'${stderr}'; echo $? >'${status}'; } | head -1`;
    const { stdout } = await run("sh", ["-c", script], { cwd: root });
    expect(stdout).toMatch(/^samples\/bare-lf\.eml|^\{"file":"samples\/bare-lf\.eml"/);
    expect(stdout.trim().split("\n")).toHaveLength(1);
    expect(await readFile(stderr, "utf8")).toBe("");
    expect((await readFile(status, "utf8")).trim()).toBe("0");
  });
});
