// One daemon per spool: a second `receiptd serve` on the same data directory must refuse before
// it touches the files the first keeps reserved in queue/.
import { mkdir } from "node:fs/promises";
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
