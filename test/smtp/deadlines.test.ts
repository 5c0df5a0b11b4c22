import { describe, expect, it } from "vitest";
import { LISTENER_REPLIES } from "../../src/smtp/index.js";
import type { RawSmtp } from "../helpers/smtp-client.js";
import { consume, harnessPerTest, sleep, testCertificate } from "./fixture.js";

const { start, connect } = harnessPerTest();

/** Writes one byte of `text` every `everyMs`, round and round, until the connection closes. */
function trickle(client: RawSmtp, text: string, everyMs: number): { sent(): number } {
  let sent = 0;
  const timer = setInterval(() => {
    if (client.isClosed()) return clearInterval(timer);
    client.write(text[sent % text.length]!);
    sent++;
  }, everyMs);
  return { sent: () => sent };
}

// The idle timeout is well beyond each test's wait: only a deadline that bytes do not reset can end these sessions.
const IDLE_MS = 5_000;

describe("input deadlines (421 4.4.2)", () => {
  it("a command line trickled a byte at a time is cut at the command deadline though bytes keep arriving", async () => {
    const h = await start({ timeouts: { socketMs: IDLE_MS, commandMs: 300 } });
    const client = await connect(h.port);
    expect(await client.reply()).toMatch(/^220 /);
    client.write("EHLO ");
    const bytes = trickle(client, "a", 20);
    expect(await client.reply(2_000)).toBe(LISTENER_REPLIES.commandDeadline);
    await client.closed();
    expect(bytes.sent()).toBeGreaterThan(5);
    expect(h.events).toContainEqual(expect.objectContaining({ type: "deadline", stage: "command", ip: "127.0.0.1" }));
  });

  it("DATA trickled a byte at a time is cut once its budget is spent, and nothing is kept", async () => {
    const h = await start({ timeouts: { socketMs: IDLE_MS, dataMs: 300, minDataBytesPerSecond: 1_000 } });
    const client = await connect(h.port);
    expect(await client.reply()).toMatch(/^220 /);
    await client.transaction("a@sender.test", ["info@example.com"]);
    // 50 bytes/s, well under the minimum rate: each byte buys 1 ms of the 20 it takes.
    const bytes = trickle(client, "Subject: slow\r\n\r\nbody\r\n", 20);
    expect(await client.reply(2_000)).toBe(LISTENER_REPLIES.dataDeadline);
    await client.closed();
    expect(bytes.sent()).toBeGreaterThan(5);
    expect(h.events).toContainEqual(expect.objectContaining({ type: "deadline", stage: "data" }));
    expect(h.stored).toEqual([]);
  });

  it("a TLS handshake after STARTTLS trickled a byte at a time is cut at the command deadline", async () => {
    const h = await start({ tls: await testCertificate(), timeouts: { socketMs: IDLE_MS, commandMs: 300 } });
    const client = await connect(h.port);
    expect(await client.reply()).toMatch(/^220 /);
    expect(await client.command("EHLO client.test")).toMatch(/STARTTLS/);
    expect(await client.command("STARTTLS")).toMatch(/^220 /);
    // The first bytes of a TLS record header, and never the rest.
    const bytes = trickle(client, "\x16\x03\x01", 20);
    await client.closed(2_000);
    expect(bytes.sent()).toBeGreaterThan(5);
    expect(h.events).toContainEqual(expect.objectContaining({ type: "deadline", stage: "command" }));
  });

  it("do not count time our backpressure holds the client back: a slow spool is not the client's fault", async () => {
    const h = await start({
      // At a minimum rate this high the bytes themselves buy next to nothing.
      timeouts: { socketMs: IDLE_MS, dataMs: 200, minDataBytesPerSecond: 1_000_000_000 },
      accept: async (_session, body) => {
        for await (const chunk of body) {
          void chunk;
          await sleep(30);
        }
      },
    });
    const client = await connect(h.port);
    expect(await client.reply()).toMatch(/^220 /);
    await client.transaction("a@sender.test", ["info@example.com"]);
    client.write(`Subject: big\r\n\r\n${`${"x".repeat(998)}\r\n`.repeat(2_000)}.\r\n`);
    expect(await client.reply(10_000)).toMatch(/^250 Ok /);
    expect(h.events.some((event) => event.type === "deadline")).toBe(false);
  });

  it("are not idle timers: a client that pauses between whole commands, or waits for our answer to DATA, is not cut", async () => {
    const h = await start({
      timeouts: { socketMs: IDLE_MS, commandMs: 200, dataMs: 200, minDataBytesPerSecond: 1_000 },
      accept: async (_session, body) => {
        await consume(body);
        await sleep(500);
      },
    });
    const client = await connect(h.port);
    expect(await client.reply()).toMatch(/^220 /);
    expect(await client.command("EHLO client.test")).toMatch(/^250-/);
    await sleep(400);
    expect(await client.command("NOOP")).toMatch(/^250 /);
    await client.transaction("a@sender.test", ["info@example.com"]);
    client.write("Subject: prompt\r\n\r\nbody\r\n.\r\n");
    expect(await client.reply()).toMatch(/^250 Ok /);
    await sleep(300);
    expect(await client.command("QUIT")).toMatch(/^221 /);
    expect(h.events.some((event) => event.type === "deadline")).toBe(false);
  });
});
