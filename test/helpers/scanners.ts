import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { freePort } from "./daemon.js";

/** The standard test virus (68 bytes) and spam (GTUBE) strings. */
export const EICAR = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
export const GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/** Debian's packages, which .ci/run installs; a developer's machine may lack them. */
export const CLAMD = "/usr/sbin/clamd";
export const SPAMD = "/usr/sbin/spamd";
export const RSPAMD = "/usr/bin/rspamd";
export const hasEngines = existsSync(CLAMD) && existsSync(SPAMD) && existsSync(RSPAMD);

export interface Engine {
  address: string;
  /** clamd's Unix socket, beside its TCP port. */
  socket?: string;
  stop(): Promise<void>;
}

export { freePort } from "./daemon.js";

async function listening(port: number, child: ChildProcess, what: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode}`);
    const up = await new Promise<boolean>((resolve) => {
      const socket = connect(port, "127.0.0.1", () => {
        socket.destroy();
        resolve(true);
      });
      socket.on("error", () => resolve(false));
    });
    if (up) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`${what} did not listen on ${port} within ${timeoutMs} ms`);
}

/** Kills the engine's whole process group: rspamd's and spamd's workers outlive their main process otherwise. */
function stopper(child: ChildProcess): () => Promise<void> {
  return () =>
    new Promise((resolve) => {
      const group = () => {
        try {
          process.kill(-child.pid!, "SIGKILL");
        } catch {
          // Already gone.
        }
      };
      if (child.exitCode !== null) {
        group();
        return resolve();
      }
      child.once("exit", () => {
        group();
        resolve();
      });
      group();
    });
}

/**
 * clamd on a private port with a signature database made here (no network: freshclam cannot
 * fetch one): the MD5 of EICAR as an .hdb signature, which clamd matches in a decoded attachment.
 */
export async function startClamd(dir: string): Promise<Engine> {
  await mkdir(dir, { recursive: true });
  const md5 = createHash("md5").update(EICAR).digest("hex");
  await writeFile(join(dir, "test.hdb"), `${md5}:${EICAR.length}:Receiptd-Test-EICAR\n`);
  const port = await freePort();
  await writeFile(
    join(dir, "clamd.conf"),
    [
      `Foreground yes`,
      `DatabaseDirectory ${dir}`,
      `TCPSocket ${port}`,
      `TCPAddr 127.0.0.1`,
      `LocalSocket ${join(dir, "clamd.sock")}`,
      `LogFile ${join(dir, "clamd.log")}`,
      `StreamMaxLength 50M`,
      "",
    ].join("\n"),
  );
  const child = spawn(CLAMD, ["-c", join(dir, "clamd.conf")], { stdio: "ignore", detached: true });
  await listening(port, child, "clamd", 60_000);
  return { address: `127.0.0.1:${port}`, socket: join(dir, "clamd.sock"), stop: stopper(child) };
}

/** spamd on a private port, with Debian's rules (GTUBE needs no network). */
export async function startSpamd(): Promise<Engine> {
  const port = await freePort();
  const child = spawn(SPAMD, [`--listen=127.0.0.1:${port}`, "--allowed-ips=127.0.0.1", "-x", "--max-children=2", "-s", "stderr"], { stdio: "ignore", detached: true });
  await listening(port, child, "spamd", 60_000);
  return { address: `127.0.0.1:${port}`, stop: stopper(child) };
}

/**
 * rspamd with Debian's configuration and a private port: the normal worker's bind socket in a
 * local.d of its own, its databases and pid file in `dir`. As root it must be given a user.
 */
export async function startRspamd(dir: string): Promise<Engine> {
  const local = join(dir, "local.d");
  await mkdir(local, { recursive: true });
  await mkdir(join(dir, "db"), { recursive: true });
  await mkdir(join(dir, "run"), { recursive: true });
  const port = await freePort();
  await writeFile(join(local, "worker-normal.inc"), `bind_socket = "127.0.0.1:${port}";\n`);
  // The controller and proxy workers would take their default ports, which may be in use.
  await writeFile(join(local, "worker-controller.inc"), `bind_socket = "127.0.0.1:${await freePort()}";\n`);
  await writeFile(join(local, "worker-proxy.inc"), `bind_socket = "127.0.0.1:${await freePort()}";\n`);
  await chmod(dir, 0o777);
  for (const sub of ["db", "run"]) await chmod(join(dir, sub), 0o777);
  const asRoot = process.getuid?.() === 0 ? ["-u", "_rspamd", "-g", "_rspamd"] : [];
  const child = spawn(
    RSPAMD,
    ["-f", ...asRoot, "-c", "/etc/rspamd/rspamd.conf", "--var", `LOCAL_CONFDIR=${dir}`, "--var", `DBDIR=${join(dir, "db")}`, "--var", `RUNDIR=${join(dir, "run")}`],
    { stdio: "ignore", detached: true },
  );
  await listening(port, child, "rspamd", 90_000);
  return { address: `http://127.0.0.1:${port}`, stop: stopper(child) };
}
