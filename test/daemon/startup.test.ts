// What `receiptd serve` refuses at start, and what it tidies: real CLI processes and startDaemon
// in this process, real files.
import { execFile } from "node:child_process";
import { mkdir, readdir, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { generate } from "selfsigned";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/config.js";
import type { ReceiptdConfig } from "../../src/config/config.js";
import { startDaemon } from "../../src/daemon/daemon.js";
import type { Daemon } from "../../src/daemon/daemon.js";
import { createLogger } from "../../src/ops/log.js";
import { Capture } from "../ops/capture.js";
import { ROOT, liveRuleSet, scratch, testConfig } from "../helpers/daemon.js";

const run = promisify(execFile);
const BIN = join(ROOT, "dist/cli/main.js");
const SECURE_ONLY = join(ROOT, "rules/secure-only.json");

let work: { dir: string; remove(): Promise<void> };
const daemons: Daemon[] = [];
beforeAll(async () => {
  work = await scratch("receiptd-startup-");
});
afterEach(async () => {
  await Promise.all(daemons.splice(0).map((daemon) => daemon.stop(0)));
});
afterAll(async () => {
  await work.remove();
});

async function directory(name: string): Promise<string> {
  const dir = join(work.dir, name);
  await mkdir(dir, { recursive: true });
  return dir;
}

/**
 * `receiptd serve --config` with `config`; resolves with its exit code and stderr once it has
 * ended. A variable set to undefined in `env` is removed from the child's environment.
 */
async function serve(dir: string, config: Record<string, unknown>, env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stderr: string }> {
  const file = join(dir, "receiptd.json");
  await writeFile(file, JSON.stringify(config));
  const childEnv: NodeJS.ProcessEnv = { ...process.env, RECEIPTD_LOG_FORMAT: "json", ...env };
  for (const [name, value] of Object.entries(childEnv)) if (value === undefined) delete childEnv[name];
  try {
    const { stderr } = await run(process.execPath, [BIN, "serve", "--config", file], {
      cwd: dir,
      env: childEnv,
      timeout: 20_000,
    });
    return { code: 0, stderr };
  } catch (error) {
    const failed = error as { code: number; stderr: string };
    return { code: failed.code, stderr: failed.stderr };
  }
}

function configFor(dir: string, extra: Record<string, unknown> = {}): ReceiptdConfig {
  return parseConfig(testConfig(dir, extra), { source: join(dir, "receiptd.json"), baseDir: dir });
}

async function start(config: ReceiptdConfig, out = new Capture()): Promise<Daemon> {
  const daemon = await startDaemon(config, { logger: createLogger({ stream: out, format: "json" }) });
  daemons.push(daemon);
  return daemon;
}

const NO_STACK = /^\s+at /m;

describe("TLS at start", () => {
  it("refuses a rule set that requires TLS when none is configured, naming the rule and config.smtp.tls", async () => {
    const dir = await directory("require-no-tls");
    const { code, stderr } = await serve(dir, testConfig(dir, { rules: SECURE_ONLY }));
    expect(code).toBe(2);
    expect(stderr).toContain('Rules[0].TlsPolicy: rule "payroll-requires-tls" requires TLS');
    expect(stderr).toContain("config.smtp.tls");
    expect(stderr).not.toMatch(NO_STACK);

    await expect(start(configFor(dir, { rules: SECURE_ONLY }))).rejects.toThrow(/"payroll-requires-tls" requires TLS.*config\.smtp\.tls/);
    // The refusal gave the spool's lock back.
    expect(await readdir(join(dir, "data", "spool"))).not.toContain("lock");
  });

  it("refuses a missing certificate or key file with the file and the field, no stack trace", async () => {
    const dir = await directory("missing-cert");
    const { private: key } = await generate([{ name: "commonName", value: "mx.receiptd.test" }], { keySize: 2048 });
    await writeFile(join(dir, "key.pem"), key);
    const smtp = (tls: Record<string, string>) => ({ smtp: { listen: [{ host: "127.0.0.1", port: 0 }], reverseDns: false, tls } });

    const missingCert = smtp({ cert: join(dir, "cert.pem"), key: join(dir, "key.pem") });
    const { code, stderr } = await serve(dir, testConfig(dir, missingCert));
    expect(code).toBe(2);
    expect(stderr).toContain(`config.smtp.tls.cert: cannot read ${join(dir, "cert.pem")}: ENOENT`);
    expect(stderr).not.toMatch(NO_STACK);

    const missingKey = configFor(dir, smtp({ cert: join(dir, "key.pem"), key: join(dir, "nokey.pem") }));
    await expect(start(missingKey)).rejects.toThrow(`config.smtp.tls.key: cannot read ${join(dir, "nokey.pem")}`);
    const notACertificate = configFor(dir, smtp({ cert: join(dir, "key.pem"), key: join(dir, "key.pem") }));
    await expect(start(notACertificate)).rejects.toThrow(/config\.smtp\.tls: .* are not a PEM certificate and its private key/);
  });
});

describe("TLS on reload", () => {
  it("refuses a new rule set that requires TLS when none is configured, keeps the old one and logs why", async () => {
    const dir = await directory("reload-require");
    const rulesFile = join(dir, "rules.json");
    await writeFile(rulesFile, liveRuleSet(["old@example.com"]));
    const out = new Capture();
    const daemon = await start(configFor(dir, { rules: rulesFile, identities: ["example.com"], admin: null }), out);

    const requiring = JSON.parse(liveRuleSet(["new@example.com"])) as { Metadata: { Name: string }; Rules: Record<string, unknown>[] };
    requiring.Metadata.Name = "requiring";
    requiring.Rules[0]!.TlsPolicy = "Require";
    await writeFile(`${rulesFile}.tmp`, JSON.stringify(requiring));
    await rename(`${rulesFile}.tmp`, rulesFile);
    expect(await daemon.reload()).toBe(false);

    const refused = out.records().filter((record) => record.event === "config.reload_refused");
    expect(refused.length).toBeGreaterThan(0);
    expect(JSON.stringify(refused[0]!.issues)).toContain('rule \\"keep\\" requires TLS');
    expect(out.records().some((record) => record.event === "config.reloaded")).toBe(false);
  });
});

describe("AWS credentials at start", () => {
  it("refuses to start with the AWS back end when the SDK's chain finds no credentials", async () => {
    const dir = await directory("no-credentials");
    const empty = join(dir, "empty");
    await writeFile(empty, "");
    const env: NodeJS.ProcessEnv = {};
    for (const name of Object.keys(process.env)) if (name.startsWith("AWS_") && name !== "AWS_CA_BUNDLE") env[name] = undefined;
    Object.assign(env, { AWS_SHARED_CREDENTIALS_FILE: empty, AWS_CONFIG_FILE: empty, AWS_EC2_METADATA_DISABLED: "true" });
    const { code, stderr } = await serve(dir, testConfig(dir, { backends: { S3: "aws" }, aws: { region: "us-east-1" } }), env);
    expect(code).toBe(2);
    expect(stderr).toContain("config.backends: S3 goes to AWS, but no AWS credentials were found");
    expect(stderr).not.toMatch(NO_STACK);
  });
});

describe("leftover temporary files", () => {
  it("removes the local back end's temp files at start and keeps every object and message", async () => {
    const dir = await directory("leftovers");
    const data = join(dir, "data");
    const bucket = join(data, "s3", "receiptd-inbound");
    const mailbox = join(data, "workmail", "m-0123456789abcdef0123456789abcdef", "someone@example.com");
    const outbox = join(data, "outbox");
    for (const sub of [join(bucket, "inbox"), join(mailbox, "tmp"), join(mailbox, "new"), outbox]) await mkdir(sub, { recursive: true });
    const temps = [
      join(bucket, ".receiptd-tmp-0b1e4b8e-9a5c-4d3e-8f5e-6f1d2c3b4a59"),
      join(bucket, "inbox", ".receiptd-tmp-7c9e6679-7425-40de-944b-e07fc1f90ae7"),
      join(mailbox, "tmp", "1764684000.M123000P4242Q1R0123456789abcdef.mx.receiptd.test"),
      join(outbox, ".20261202T144500123Z-000007-0a1b2c3d4e5f.eml.tmp"),
    ];
    const kept = [
      join(bucket, "inbox", "message-1"),
      join(bucket, ".receiptd-tmp-not-a-temp-name"),
      join(mailbox, "new", "1764684000.M123000P4242Q1R0123456789abcdef.mx.receiptd.test"),
      join(mailbox, "tmp", "written-by-another-delivery-agent"),
      join(outbox, "20261202T144500123Z-000007-0a1b2c3d4e5f.eml"),
    ];
    for (const file of [...temps, ...kept]) await writeFile(file, "x");

    const out = new Capture();
    await start(configFor(dir, { admin: null }), out);

    const left = async (path: string) => readdir(path);
    expect((await left(bucket)).sort()).toEqual([".receiptd-tmp-not-a-temp-name", "inbox"]);
    expect(await left(join(bucket, "inbox"))).toEqual(["message-1"]);
    expect(await left(join(mailbox, "tmp"))).toEqual(["written-by-another-delivery-agent"]);
    expect(await left(join(mailbox, "new"))).toHaveLength(1);
    expect(await left(outbox)).toEqual(["20261202T144500123Z-000007-0a1b2c3d4e5f.eml"]);
    expect(out.records().find((record) => record.event === "actions.temporaries_removed")).toMatchObject({ files: 4 });
  });

  it("starts all the same when the leftovers cannot be looked for, and says so", async () => {
    const dir = await directory("leftovers-unreadable");
    await mkdir(join(dir, "data"), { recursive: true });
    // Not a directory: reading it fails with ENOTDIR, as an unreadable one would for another user.
    await writeFile(join(dir, "data", "s3"), "x");
    const out = new Capture();
    await start(configFor(dir, { admin: null }), out);
    expect(out.records().find((record) => record.event === "actions.temporaries_not_removed")).toMatchObject({ level: "warn" });
  });
});
