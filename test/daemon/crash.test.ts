// Crash safety of `receiptd serve` (docs/behaviour.md §8): kill -9 while actions run, or in the middle
// of DATA, then start again on the same data directory.
import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import net from "node:net";
import { join } from "node:path";
import nodemailer from "nodemailer";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { queuedContent, scratch, startDaemonProcess, testConfig } from "../helpers/daemon.js";
import type { DaemonProcess } from "../helpers/daemon.js";

const COUNT = "arn:aws:lambda:us-east-1:123456789012:function:count";
const SLOW = "arn:aws:lambda:us-east-1:123456789012:function:slow";

let work: { dir: string; remove(): Promise<void> };
const daemons: DaemonProcess[] = [];
beforeAll(async () => {
  work = await scratch("receiptd-crash-");
});
afterEach(async () => {
  await Promise.all(daemons.splice(0).map((d) => d.kill("SIGKILL")));
});
afterAll(async () => {
  await work.remove();
});

async function lines(file: string): Promise<string[]> {
  try {
    return (await readFile(file, "utf8")).split("\n").filter(Boolean);
  } catch {
    return [];
  }
}

/** A rule set whose middle action is slow, with handlers that leave one line per call. */
async function crashSetup(dir: string): Promise<Record<string, unknown>> {
  await mkdir(dir, { recursive: true });
  const handler = (marker: string, delayMs: number) => `import { appendFileSync } from "node:fs";
export const handler = async (event) => {
  appendFileSync(${JSON.stringify(join(dir, marker))}, event.Records[0].ses.mail.messageId + "\\n");
  await new Promise((resolve) => setTimeout(resolve, ${delayMs}));
  return { disposition: "CONTINUE" };
};
`;
  await writeFile(join(dir, "count.mjs"), handler("count.log", 0));
  await writeFile(join(dir, "slow.mjs"), handler("slow.log", 4000));
  await writeFile(
    join(dir, "rules.json"),
    JSON.stringify({
      Metadata: { Name: "crash" },
      Rules: [
        {
          Name: "all",
          Enabled: true,
          Recipients: ["example.com"],
          Actions: [
            { LambdaAction: { FunctionArn: COUNT, InvocationType: "Event" } },
            { LambdaAction: { FunctionArn: SLOW, InvocationType: "RequestResponse" } },
            { S3Action: { BucketName: "kept" } },
          ],
        },
      ],
    }),
  );
  return testConfig(dir, {
    rules: join(dir, "rules.json"),
    identities: ["example.com"],
    local: { lambdaHandlers: { [COUNT]: join(dir, "count.mjs"), [SLOW]: join(dir, "slow.mjs") } },
  });
}

async function launch(config: Record<string, unknown>, dir: string): Promise<DaemonProcess> {
  const daemon = await startDaemonProcess(config, dir);
  daemons.push(daemon);
  return daemon;
}

describe("crash safety", () => {
  it("after kill -9 during a slow action, every accepted message is processed, resuming after the recorded actions", async () => {
    const dir = join(work.dir, "slow-action");
    const config = await crashSetup(dir);
    const first = await launch(config, dir);
    const transport = nodemailer.createTransport({ host: "127.0.0.1", port: first.smtpPort, secure: false });
    const accepted: string[] = [];
    for (let i = 0; i < 6; i++) {
      const info = await transport.sendMail({ from: "a@example.org", to: `user${i}@example.com`, subject: `m${i}`, text: "x" });
      accepted.push(/^250 Ok ([0-9a-v]{40})$/.exec(info.response)![1]!);
    }
    // Every message is inside the slow action: the one before it is journaled, the one after not run.
    await expect.poll(async () => (await lines(join(dir, "slow.log"))).length, { timeout: 10_000 }).toBe(accepted.length);
    expect(await first.kill("SIGKILL")).toBe("SIGKILL");
    expect(await readdir(join(dir, "data", "s3")).catch(() => [])).toEqual([]);

    const second = await launch(config, dir);
    const started = second.logs.find((line) => line.event === "daemon.started")!;
    expect(started.pending).toBe(6);
    for (const id of accepted) {
      await second.waitForLog((line) => line.event === "processing.message-completed" && line.messageId === id, 20_000);
    }
    expect((await readdir(join(dir, "data", "s3", "kept"))).sort()).toEqual([...accepted].sort());
    // The first action was journaled before the kill: not run again. The slow one was cut off: run again.
    expect((await lines(join(dir, "count.log"))).sort()).toEqual([...accepted].sort());
    const slow = await lines(join(dir, "slow.log"));
    for (const id of accepted) expect(slow.filter((line) => line === id).length).toBeGreaterThanOrEqual(1);
    expect(await readdir(join(dir, "data", "spool", "queue"))).toEqual([]);
  });

  it("a message cut off by kill -9 in the middle of DATA is never processed", async () => {
    const dir = join(work.dir, "mid-data");
    const config = await crashSetup(dir);
    const first = await launch(config, dir);
    const socket = net.connect(first.smtpPort, "127.0.0.1");
    let received = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => (received += chunk));
    socket.on("error", () => undefined);
    const waitFor = (pattern: RegExp) => expect.poll(() => pattern.test(received), { timeout: 5000 }).toBe(true);
    await waitFor(/^220 /m);
    socket.write("EHLO cut.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<user@example.com>\r\nDATA\r\n");
    await waitFor(/^354 /m);
    socket.write(`Subject: half\r\n\r\n${"partial line\r\n".repeat(50_000)}`);
    await first.waitForLog((line) => line.event === "smtp.mail");
    await new Promise((resolve) => setTimeout(resolve, 200));
    await first.kill("SIGKILL");
    socket.destroy();

    const second = await launch(config, dir);
    expect(second.logs.find((line) => line.event === "daemon.started")!.pending).toBe(0);
    const spool = join(dir, "data", "spool");
    expect(await readdir(join(spool, "queue"))).toEqual([]);
    expect(await readdir(join(spool, "tmp"))).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await lines(join(dir, "count.log"))).toEqual([]);
    expect(second.logs.some((line) => String(line.event).startsWith("processing."))).toBe(false);
  });

  it("an SMTP smuggling attempt is refused and nothing of it is processed", async () => {
    const dir = join(work.dir, "smuggling");
    const daemon = await launch(await crashSetup(dir), dir);
    const socket = net.connect(daemon.smtpPort, "127.0.0.1");
    let received = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => (received += chunk));
    // Only the replies are under test: a reset as the connection closes must not surface as an uncaught error.
    socket.on("error", () => undefined);
    const waitFor = (pattern: RegExp) => expect.poll(() => pattern.test(received), { timeout: 5000 }).toBe(true);
    await waitFor(/^220 /m);
    socket.write("EHLO smuggle.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<user@example.com>\r\nDATA\r\n");
    await waitFor(/^354 /m);
    socket.write(
      "Subject: first\r\n\r\nhello\n.\nMAIL FROM:<admin@example.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n",
    );
    await waitFor(/^554 5\.5\.0 Bare line feed or carriage return before end of data$/m);
    socket.end("QUIT\r\n");
    expect(received).not.toMatch(/^250 Ok /m);
    expect(await queuedContent(join(dir, "data", "spool", "queue"))).toEqual([]);
    expect(daemon.logs.some((line) => line.event === "smtp.accepted")).toBe(false);
  });
});
