import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import nodemailer from "nodemailer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDaemonProcess, testConfig } from "../helpers/daemon.js";

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

  it("serve keeps accepting mail when its log reader goes away, and still stops gracefully", async () => {
    const dir = join(scratch, "serve");
    await mkdir(dir, { recursive: true });
    const daemon = await startDaemonProcess(testConfig(dir), dir);
    // Closing our end makes the daemon's next log write fail with EPIPE.
    daemon.child.stderr!.destroy();
    const transport = nodemailer.createTransport({ host: "127.0.0.1", port: daemon.smtpPort, secure: false });
    try {
      for (let i = 0; i < 3; i++) {
        const info = await transport.sendMail({ from: "alice@example.org", to: "info@example.com", subject: `after ${i}`, text: "hello" });
        expect(info.response).toMatch(/^250 /);
      }
    } finally {
      transport.close();
    }
    expect(await daemon.kill("SIGTERM")).toBe(0);
  });
});
