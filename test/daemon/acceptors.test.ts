// `receiptd serve` with smtp.processes > 1: SMTP served by acceptor processes beside the daemon's
// own, which processes. The built daemon, real sockets, real signals.
import { mkdir, readdir, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CreateReceiptRuleCommand, CreateReceiptRuleSetCommand, SetActiveReceiptRuleSetCommand, VerifyDomainIdentityCommand } from "@aws-sdk/client-ses";
import nodemailer from "nodemailer";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { sesClient, storeModeConfig } from "../helpers/api-daemon.js";
import { liveRuleSet, queuedContent, scratch, startDaemonProcess, testConfig } from "../helpers/daemon.js";
import type { DaemonProcess } from "../helpers/daemon.js";

let work: { dir: string; remove(): Promise<void> };
const daemons: DaemonProcess[] = [];
const acceptorPids: number[] = [];

beforeAll(async () => {
  work = await scratch("receiptd-acceptors-");
});
afterEach(async () => {
  await Promise.all(daemons.splice(0).map((d) => d.kill("SIGKILL")));
  // An acceptor whose daemon was killed exits by itself; one that did not must not outlive the test.
  for (const pid of acceptorPids.splice(0)) if (alive(pid)) process.kill(pid, "SIGKILL");
});
afterAll(async () => {
  await work.remove();
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function start(name: string, extra: Record<string, unknown> = {}): Promise<DaemonProcess> {
  const dir = join(work.dir, name);
  await mkdir(dir, { recursive: true });
  return launch(testConfig(dir, { ...extra, smtp: { listen: [{ host: "127.0.0.1", port: 0 }], reverseDns: false, processes: 2 } }), dir);
}

async function launch(config: Record<string, unknown>, dir: string): Promise<DaemonProcess> {
  const daemon = await startDaemonProcess(config, dir);
  daemons.push(daemon);
  for (const pid of acceptorsOf(daemon).values()) acceptorPids.push(pid);
  return daemon;
}

/** Acceptor index to pid, as the daemon last reported them started. */
function acceptorsOf(daemon: DaemonProcess): Map<number, number> {
  const pids = new Map<number, number>();
  for (const line of daemon.logs) {
    if (line.event === "smtp.acceptor_started") pids.set(line.acceptor as number, line.pid as number);
  }
  return pids;
}

/** One message on its own connection; the 250's message ID, or the error's text. */
async function send(port: number, to = "info@example.com"): Promise<string> {
  const transport = nodemailer.createTransport({ host: "127.0.0.1", port, secure: false });
  try {
    const info = await transport.sendMail({ from: "a@example.org", to, subject: "hello", text: "x" });
    return /^250 Ok ([0-9a-v]{40})$/.exec(info.response)?.[1] ?? info.response;
  } catch (error) {
    return (error as Error).message;
  } finally {
    transport.close();
  }
}

const completed = (daemon: DaemonProcess, messageId: string) =>
  daemon.waitForLog((line) => line.event === "processing.message-completed" && line.messageId === messageId, 20_000);

describe("receiptd serve with acceptor processes", () => {
  it("accepts through every acceptor on the shared port, and the daemon processes each message once", async () => {
    const daemon = await start("shared");
    const pids = acceptorsOf(daemon);
    expect([...pids.keys()].sort()).toEqual([0, 1]);
    expect(new Set([...pids.values(), daemon.child.pid]).size).toBe(3);

    // The kernel decides which acceptor takes a connection: waves of ten at once until each has taken some.
    const ids: string[] = [];
    const servedBy = () => new Set(daemon.logs.filter((line) => line.event === "smtp.accepted").map((line) => line.acceptor));
    for (let wave = 0; wave < 10 && (wave === 0 || servedBy().size < 2); wave++) {
      ids.push(...(await Promise.all(Array.from({ length: 10 }, () => send(daemon.smtpPort)))));
      await expect.poll(() => daemon.logs.filter((line) => line.event === "smtp.accepted").length).toBe(ids.length);
    }
    for (const id of ids) expect(id).toMatch(/^[0-9a-v]{40}$/);
    for (const id of ids) await completed(daemon, id);

    // The daemon logs what each acceptor did, under its number.
    const accepted = daemon.logs.filter((line) => line.event === "smtp.accepted");
    expect(accepted.map((line) => line.messageId).sort()).toEqual([...ids].sort());
    expect(servedBy()).toEqual(new Set([0, 1]));
    expect((await readdir(join(daemon.dir, "data", "s3", "receiptd-archive", "all"))).sort()).toEqual([...ids].sort());
    const processed = daemon.logs.filter((line) => line.event === "processing.message-completed").map((line) => line.messageId);
    expect(processed.sort()).toEqual([...ids].sort());

    const metrics = async () => (await fetch(`http://127.0.0.1:${daemon.adminPort}/metrics`)).text();
    // The last sessions' ends may still be on their way from the acceptors.
    await expect.poll(metrics, { timeout: 5000 }).toMatch(/^receiptd_smtp_connections_open 0$/m);
    expect(await metrics()).toMatch(new RegExp(`^receiptd_smtp_messages_accepted_total ${ids.length}$`, "m"));
    expect(await metrics()).toMatch(new RegExp(`^receiptd_smtp_connections_total ${ids.length}$`, "m"));
    expect(await metrics()).toMatch(new RegExp(`^receiptd_smtp_accept_seconds_count ${ids.length}$`, "m"));
    expect(await metrics()).toMatch(/^receiptd_spool_depth 0$/m);
  });

  it("counts the authentications done in the acceptors in the daemon's /metrics", async () => {
    const daemon = await start("auth", { authentication: { enabled: true, dnsTimeoutMs: 500 } });
    const ids = await Promise.all([0, 1, 2, 3].map(() => send(daemon.smtpPort)));
    for (const id of ids) await completed(daemon, id);
    const metrics = async () => (await fetch(`http://127.0.0.1:${daemon.adminPort}/metrics`)).text();
    // The verdicts depend on this machine's DNS; that each message was counted once does not.
    await expect.poll(metrics, { timeout: 5000 }).toMatch(/^receiptd_auth_seconds_count 4$/m);
    const spf = [...(await metrics()).matchAll(/^receiptd_auth_results_total\{check="spf",verdict="[A-Z_]+"\} (\d+)$/gm)];
    expect(spf.reduce((sum, match) => sum + Number(match[1]), 0)).toBe(4);
  });

  it("hands every reload to the acceptors, and a refused file to none", async () => {
    const dir = join(work.dir, "reload");
    await mkdir(dir, { recursive: true });
    const rulesFile = join(dir, "rules.json");
    await writeFile(rulesFile, liveRuleSet(["old@example.com"]));
    const daemon = await start("reload", { rules: rulesFile, identities: ["example.com"] });
    const sendFour = async (to: string) => Promise.all([0, 1, 2, 3].map(() => send(daemon.smtpPort, to)));

    for (const reply of await sendFour("new@example.com")) expect(reply).toMatch(/550 5\.1\.1/);
    await writeFile(`${rulesFile}.tmp`, liveRuleSet(["old@example.com", "new@example.com"]));
    await rename(`${rulesFile}.tmp`, rulesFile);
    await daemon.waitForLog((line) => line.event === "config.reloaded");
    for (const acceptor of [0, 1]) {
      await daemon.waitForLog((line) => line.event === "config.applied" && line.acceptor === acceptor && line.generation === 2);
    }
    for (const reply of await sendFour("new@example.com")) expect(reply).toMatch(/^[0-9a-v]{40}$/);

    await writeFile(rulesFile, '{"Rules": [{"Name": "broken", "Actions": [{"S3Action": {}}]}]}');
    await daemon.waitForLog((line) => line.event === "config.reload_refused");
    for (const reply of await sendFour("new@example.com")) expect(reply).toMatch(/^[0-9a-v]{40}$/);
    expect(daemon.logs.filter((line) => line.event === "config.applied")).toHaveLength(2);
    expect(daemon.logs.some((line) => line.event === "config.mirror_failed")).toBe(false);
  });

  it("replaces an acceptor that dies, and processes what it had accepted", async () => {
    const daemon = await start("replace");
    const before = acceptorsOf(daemon);
    const ids = await Promise.all([0, 1, 2, 3].map(() => send(daemon.smtpPort)));
    process.kill(before.get(0)!, "SIGKILL");
    const exited = await daemon.waitForLog((line) => line.event === "smtp.acceptor_exited");
    expect(exited).toMatchObject({ level: "error", acceptor: 0, signal: "SIGKILL" });
    await daemon.waitForLog((line) => line.event === "smtp.acceptor_started" && line.acceptor === 0 && line.pid !== before.get(0));
    const after = acceptorsOf(daemon);
    acceptorPids.push(after.get(0)!);
    expect(alive(after.get(0)!)).toBe(true);

    ids.push(...(await Promise.all([0, 1, 2, 3].map(() => send(daemon.smtpPort)))));
    for (const id of ids) expect(id).toMatch(/^[0-9a-v]{40}$/);
    for (const id of ids) await completed(daemon, id);
  });

  it("stops on SIGTERM with its acceptors: exit code 0, nothing left queued, no acceptor left running", async () => {
    const daemon = await start("sigterm");
    const pids = [...acceptorsOf(daemon).values()];
    const id = await send(daemon.smtpPort);
    await completed(daemon, id);
    expect(await daemon.kill("SIGTERM")).toBe(0);
    for (const pid of pids) expect(alive(pid)).toBe(false);
    expect(await readdir(join(daemon.dir, "data", "spool", "queue"))).toEqual([]);
  });

  it("after kill -9 of the daemon's process the acceptors exit at once, and a restart processes every message answered 250", async () => {
    const dir = join(work.dir, "kill-daemon");
    await mkdir(dir, { recursive: true });
    await writeFile(
      join(dir, "slow.mjs"),
      "export const handler = async () => { await new Promise((resolve) => setTimeout(resolve, 3000)); return { disposition: 'CONTINUE' }; };\n",
    );
    const slow = "arn:aws:lambda:us-east-1:123456789012:function:slow";
    await writeFile(
      join(dir, "rules.json"),
      JSON.stringify({
        Metadata: { Name: "slow" },
        Rules: [
          {
            Name: "all",
            Enabled: true,
            Recipients: ["example.com"],
            Actions: [{ LambdaAction: { FunctionArn: slow, InvocationType: "RequestResponse" } }, { S3Action: { BucketName: "kept" } }],
          },
        ],
      }),
    );
    const config = testConfig(dir, {
      rules: join(dir, "rules.json"),
      identities: ["example.com"],
      local: { lambdaHandlers: { [slow]: join(dir, "slow.mjs") } },
      smtp: { listen: [{ host: "127.0.0.1", port: 0 }], reverseDns: false, processes: 2 },
    });
    const first = await launch(config, dir);
    const pids = [...acceptorsOf(first).values()];
    const ids = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => send(first.smtpPort, `user${i}@example.com`)));
    for (const id of ids) expect(id).toMatch(/^[0-9a-v]{40}$/);
    expect(await first.kill("SIGKILL")).toBe("SIGKILL");
    await expect.poll(() => pids.filter(alive), { timeout: 3000 }).toEqual([]);
    const queued = await queuedContent(join(dir, "data", "spool", "queue"));
    expect(queued.filter((name) => name.endsWith(".msg"))).toHaveLength(6);

    // The port is free again, and the restarted daemon finds every message.
    const second = await launch({ ...config, smtp: { ...(config.smtp as object), listen: [{ host: "127.0.0.1", port: first.smtpPort }] } }, dir);
    expect(second.logs.find((line) => line.event === "daemon.started")!.pending).toBe(6);
    for (const id of ids) await completed(second, id);
    expect((await readdir(join(dir, "data", "s3", "kept"))).sort()).toEqual([...ids].sort());
  });

  it("in store mode, follows every SES API change in every acceptor", async () => {
    const dir = join(work.dir, "store-mode");
    await mkdir(dir, { recursive: true });
    const daemon = await launch(storeModeConfig(dir, { smtp: { listen: [{ host: "127.0.0.1", port: 0 }], reverseDns: false, processes: 2 } }), dir);
    const ses = sesClient(daemon.apiPort!);
    // Several connections, so that both acceptors answer.
    const all = (to: string) => Promise.all(Array.from({ length: 6 }, () => send(daemon.smtpPort, to)));
    expect(await all("info@example.net")).toEqual(Array(6).fill(expect.stringMatching(/550 5\.1\.1/)));

    await ses.send(new CreateReceiptRuleSetCommand({ RuleSetName: "inbound" }));
    await ses.send(new CreateReceiptRuleCommand({ RuleSetName: "inbound", Rule: { Name: "keep", Enabled: true, Actions: [{ S3Action: { BucketName: "kept" } }] } }));
    await ses.send(new VerifyDomainIdentityCommand({ Domain: "example.net" }));
    await ses.send(new SetActiveReceiptRuleSetCommand({ RuleSetName: "inbound" }));
    const ids = await all("info@example.net");
    for (const id of ids) expect(id).toMatch(/^[0-9a-v]{40}$/);
    for (const id of ids) await completed(daemon, id);
    expect((await readdir(join(dir, "data", "s3", "kept"))).sort()).toEqual([...ids].sort());

    await ses.send(new SetActiveReceiptRuleSetCommand({}));
    expect(await all("info@example.net")).toEqual(Array(6).fill(expect.stringMatching(/550 5\.1\.1/)));
    ses.destroy();
  });
});
