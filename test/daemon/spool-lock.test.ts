// One daemon per spool: a second `receiptd serve` on the same data directory must refuse before
// it touches the files the first keeps reserved in queue/, and a daemon that cannot start must
// leave the spool as it found it.
import { mkdir, readdir, writeFile } from "node:fs/promises";
import net from "node:net";
import { join } from "node:path";
import nodemailer from "nodemailer";
import { afterAll, expect, it } from "vitest";
import { scratch, startDaemonProcess, testConfig } from "../helpers/daemon.js";
import type { DaemonProcess } from "../helpers/daemon.js";

const idOf = (response: string) => /^250 Ok ([0-9a-v]{40})$/.exec(response)?.[1] ?? "";
const running: DaemonProcess[] = [];

afterAll(async () => {
  await Promise.all(running.map((d) => d.kill("SIGKILL")));
});

it("refuses a second daemon on a spool in use, naming the owner, and the first loses no mail", async () => {
  const work = await scratch("receiptd-lock-");
  try {
    const dir = join(work.dir, "one");
    await mkdir(dir, { recursive: true });
    const config = testConfig(dir);
    const first = await startDaemonProcess(config, dir);
    running.push(first);
    const transport = nodemailer.createTransport({ host: "127.0.0.1", port: first.smtpPort, secure: false });
    // The first message makes the spool reserve files for the next ones.
    await transport.sendMail({ from: "alice@example.org", to: "info@example.com", subject: "warm-up", text: "hello" });

    const second = startDaemonProcess(config, dir);
    await expect(second).rejects.toThrow(new RegExp(`in use by process ${first.child.pid}\\b`));

    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const info = await transport.sendMail({ from: "alice@example.org", to: "info@example.com", subject: `after ${i}`, text: "hello" });
      ids.push(idOf(info.response));
    }
    for (const id of ids) {
      await first.waitForLog((line) => line.event === "processing.message-completed" && line.messageId === id);
    }
    expect(first.logs.filter((line) => line.event === "processing.message-missing")).toEqual([]);
    transport.close();
  } finally {
    await work.remove();
  }
});

/** A port something else is listening on. */
async function portInUse(): Promise<{ port: number; close(): Promise<void> }> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  return { port, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

it("binds its listeners before cleaning the spool up, and gives the lock back when start-up fails", async () => {
  const work = await scratch("receiptd-lock-");
  const busy = await portInUse();
  try {
    const dir = join(work.dir, "busy");
    const spool = join(dir, "data", "spool");
    // What a crash left: a snapshot being written, an accept cut short.
    await mkdir(join(spool, "tmp"), { recursive: true });
    await mkdir(join(spool, "queue"), { recursive: true });
    await writeFile(join(spool, "tmp", "snapshot-leftover.json"), "{");
    const cutShort = "0".repeat(40);
    await writeFile(join(spool, "queue", `${cutShort}.msg`), "Subject: half a message\r\n");
    const leftovers = async () => ({ tmp: await readdir(join(spool, "tmp")), queue: await readdir(join(spool, "queue")) });
    const before = await leftovers();

    const smtpBusy = testConfig(dir, { smtp: { listen: [{ host: "127.0.0.1", port: busy.port }], reverseDns: false } });
    await expect(startDaemonProcess(smtpBusy, dir)).rejects.toThrow(/EADDRINUSE/);
    expect(await leftovers()).toEqual(before);
    expect(await readdir(spool)).not.toContain("lock");

    // The admin port is bound before the SMTP listeners, so its failure too leaves all as it was.
    const adminBusy = testConfig(dir, { admin: { host: "127.0.0.1", port: busy.port } });
    await expect(startDaemonProcess(adminBusy, dir)).rejects.toThrow(/EADDRINUSE/);
    expect(await leftovers()).toEqual(before);
    expect(await readdir(spool)).not.toContain("lock");
  } finally {
    await busy.close();
    await work.remove();
  }
});
