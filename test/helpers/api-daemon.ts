import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { SESClient } from "@aws-sdk/client-ses";
import { parseConfig } from "../../src/config/config.js";
import { startDaemon } from "../../src/daemon/daemon.js";
import type { Daemon } from "../../src/daemon/daemon.js";
import { createLogger } from "../../src/ops/log.js";
import { Capture } from "../ops/capture.js";
import { testConfig } from "./daemon.js";

export interface ApiDaemon {
  daemon: Daemon;
  dir: string;
  dataDir: string;
  endpoint: string;
  smtpPort: number;
  client(options?: { accessKeyId?: string; secretAccessKey?: string; region?: string }): SESClient;
  stop(): Promise<void>;
}

/** The configuration of a daemon in store mode (no rule files, identities verified at once), for startDaemonProcess. */
export function storeModeConfig(dir: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const { rules: _rules, ...base } = testConfig(dir, extra);
  void _rules;
  return { state: { verification: "auto" }, ...base };
}

/** A client of a daemon's SES API on loopback, with the embedded default's key. */
export function sesClient(port: number): SESClient {
  return new SESClient({ endpoint: `http://127.0.0.1:${port}`, region: "us-east-1", credentials: { accessKeyId: "test", secretAccessKey: "test" }, maxAttempts: 1 });
}

/** A daemon in store mode (no rule files) with its SES API on a free port, the local back end in a temp directory. */
export async function startApiDaemon(extra: Record<string, unknown> = {}): Promise<ApiDaemon> {
  const dir = await mkdtemp(join(tmpdir(), "receiptd-api-"));
  const config = parseConfig(storeModeConfig(dir, extra), { source: join(dir, "receiptd.json"), baseDir: dir, env: {} });
  const daemon = await startDaemon(config, { logger: createLogger({ stream: new Capture(), format: "json" }) });
  const api = daemon.apiAddress()!;
  const endpoint = `http://${api.host}:${api.port}`;
  return {
    daemon,
    dir,
    dataDir: join(dir, "data"),
    endpoint,
    smtpPort: daemon.addresses()[0]!.port,
    client: (options = {}) =>
      new SESClient({
        endpoint,
        region: options.region ?? "us-east-1",
        credentials: { accessKeyId: options.accessKeyId ?? "test", secretAccessKey: options.secretAccessKey ?? "test" },
        maxAttempts: 1,
      }),
    async stop() {
      await daemon.stop(1000);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Debian's AWS CLI (v2), which .ci/run installs; a developer's PATH may have another one first. */
export const AWS_CLI = "/usr/bin/aws";
export const hasAwsCli = existsSync(AWS_CLI);

export async function aws(endpoint: string, args: string[], cwd?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(AWS_CLI, ["ses", "--endpoint-url", endpoint, "--output", "json", ...args], {
      cwd,
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        HOME: cwd ?? tmpdir(),
        AWS_ACCESS_KEY_ID: "test",
        AWS_SECRET_ACCESS_KEY: "test",
        AWS_DEFAULT_REGION: "us-east-1",
        AWS_CONFIG_FILE: "/dev/null",
        AWS_SHARED_CREDENTIALS_FILE: "/dev/null",
        AWS_PAGER: "",
        AWS_EC2_METADATA_DISABLED: "true",
      },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failed.code === "number" ? failed.code : 1, stdout: failed.stdout ?? "", stderr: failed.stderr ?? "" };
  }
}
