// `receiptd serve` against clients that trickle: the deadlines of the configuration reach the
// listener (docs/behaviour.md §4).
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../../src/config/config.js";
import { DEFAULTS } from "../../src/config/defaults.js";
import { LISTENER_REPLIES } from "../../src/smtp/index.js";
import { scratch, startDaemonProcess, testConfig } from "../helpers/daemon.js";
import type { DaemonProcess } from "../helpers/daemon.js";
import { RawSmtp } from "../helpers/smtp-client.js";

let work: { dir: string; remove(): Promise<void> };
const daemons: DaemonProcess[] = [];
const clients: RawSmtp[] = [];

beforeAll(async () => {
  work = await scratch("receiptd-slow-");
});
afterEach(async () => {
  for (const client of clients.splice(0)) client.destroy();
  await Promise.all(daemons.splice(0).map((d) => d.kill("SIGKILL")));
});
afterAll(async () => {
  await work.remove();
});

describe("receiptd serve and slow clients", () => {
  it("config.smtp.commandDeadlineMs cuts a trickled command line with 421 4.4.2 and logs it", async () => {
    const dir = join(work.dir, "command");
    await mkdir(dir, { recursive: true });
    const daemon = await startDaemonProcess(
      testConfig(dir, { smtp: { listen: [{ host: "127.0.0.1", port: 0 }], reverseDns: false, commandDeadlineMs: 1000 } }),
      dir,
    );
    daemons.push(daemon);
    const client = await RawSmtp.connect(daemon.smtpPort);
    clients.push(client);
    expect(await client.reply()).toMatch(/^220 /);
    client.write("EHLO ");
    const timer = setInterval(() => client.isClosed() || client.write("a"), 50);
    try {
      expect(await client.reply(4_000)).toBe(LISTENER_REPLIES.commandDeadline);
      await client.closed();
    } finally {
      clearInterval(timer);
    }
    const logged = await daemon.waitForLog((line) => line.event === "smtp.deadline");
    expect(logged).toMatchObject({ stage: "command", ip: "127.0.0.1", reply: LISTENER_REPLIES.commandDeadline });
  });

  it("the deadline settings default once, in the configuration, and a bad one is named", () => {
    const parse = (smtp: unknown) => parseConfig({ smtp }, { source: "test.json", baseDir: "/srv/receiptd", env: {} });
    const { smtp } = parse({}).serve;
    expect(smtp.commandDeadlineMs).toBe(DEFAULTS.smtp.commandDeadlineMs);
    expect(smtp.dataDeadlineMs).toBe(DEFAULTS.smtp.dataDeadlineMs);
    expect(smtp.minDataBytesPerSecond).toBe(DEFAULTS.smtp.minDataBytesPerSecond);
    let issues: string[] = [];
    try {
      parse({ commandDeadlineMs: 5, dataDeadlineMs: "long", minDataBytesPerSecond: 0 });
    } catch (error) {
      if (error instanceof ConfigError) issues = error.issues;
    }
    expect(issues).toEqual([
      "config.smtp.commandDeadlineMs: expected a whole number from 1000 to 3600000, found 5",
      'config.smtp.dataDeadlineMs: expected a whole number from 1000 to 3600000, found "long"',
      "config.smtp.minDataBytesPerSecond: expected a whole number from 1 to 1000000000, found 0",
    ]);
  });
});
