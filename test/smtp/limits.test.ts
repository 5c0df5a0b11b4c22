import net from "node:net";
import { performance } from "node:perf_hooks";
import { describe, expect, it } from "vitest";
import { LISTENER_REPLIES } from "../../src/smtp/index.js";
import type { RawSmtp } from "../helpers/smtp-client.js";
import { consume, eventually, harnessPerTest, sleep } from "./fixture.js";

const { start, connect } = harnessPerTest();

describe("connection limits (421)", () => {
  it("per client IP: one over the limit is told 421 and closed; a freed slot is usable again", async () => {
    const h = await start({ maxConnectionsPerIp: 2 });
    const first = await connect(h.port);
    const second = await connect(h.port);
    expect(await first.reply()).toMatch(/^220 /);
    expect(await second.reply()).toMatch(/^220 /);
    const third = await connect(h.port);
    expect(await third.reply()).toBe("421 4.7.0 Too many connections from your address, try again later");
    await third.closed();
    expect(h.events).toContainEqual(expect.objectContaining({ type: "refused", reason: "too-many-connections-from-ip" }));

    expect(await first.command("QUIT")).toMatch(/^221 /);
    await first.closed();
    await eventually(() => h.events.some((event) => event.type === "close"));
    const fourth = await connect(h.port);
    expect(await fourth.reply()).toMatch(/^220 /);
  });

  it("in all, across addresses", async () => {
    const h = await start({
      maxConnections: 2,
      listen: [
        { host: "127.0.0.1", port: 0 },
        { host: "::1", port: 0 },
      ],
    });
    const [v4, v6] = h.listener.addresses();
    const first = await connect(v4!.port, "127.0.0.1");
    const second = await connect(v6!.port, "::1");
    expect(await first.reply()).toMatch(/^220 /);
    expect(await second.reply()).toMatch(/^220 /);
    const third = await connect(v6!.port, "::1");
    expect(await third.reply()).toBe(LISTENER_REPLIES.tooManyConnections);
    await third.closed();
    await eventually(() => h.listener.connections() === 2);
  });
});

describe("sessions kept for addresses with none open", () => {
  it("sessions trickling from a few addresses cannot take every slot: a client from another address is greeted", async () => {
    // A tenth of maxConnections is kept: here 1 of 10.
    const h = await start({ maxConnections: 10, maxConnectionsPerIp: 4 });
    const replies: string[] = [];
    const greeted: RawSmtp[] = [];
    for (const source of ["127.0.0.2", "127.0.0.3", "127.0.0.4"]) {
      for (let i = 0; i < 4; i++) {
        const client = await connect(h.port, "127.0.0.1", { localAddress: source });
        const reply = await client.reply();
        replies.push(reply);
        if (reply.startsWith("220 ")) greeted.push(client);
      }
    }
    // Each greeted session keeps trickling, as a slow client would, without finishing a line.
    const timer = setInterval(() => greeted.forEach((client) => client.write("x")), 50);
    try {
      expect(replies.filter((reply) => reply.startsWith("220 "))).toHaveLength(9);
      expect(replies.filter((reply) => reply === LISTENER_REPLIES.tooManyConnectionsFromIp)).toHaveLength(3);
      const newcomer = await connect(h.port, "127.0.0.1", { localAddress: "127.0.0.9" });
      expect(await newcomer.reply()).toMatch(/^220 /);
      // The kept slot is taken now: nobody else gets in, from any address.
      const late = await connect(h.port, "127.0.0.1", { localAddress: "127.0.0.10" });
      expect(await late.reply()).toBe(LISTENER_REPLIES.tooManyConnections);
    } finally {
      clearInterval(timer);
    }
  });
});

describe("timeouts", () => {
  it("an idle client is told 421 and closed after socketMs", async () => {
    const h = await start({ timeouts: { socketMs: 200 } });
    const client = await connect(h.port);
    expect(await client.reply()).toMatch(/^220 /);
    const started = performance.now();
    // smtp-server's own wording: docs/behaviour.md says nothing about timeouts.
    expect(await client.reply(2_000)).toBe("421 Timeout - closing connection");
    await client.closed();
    expect(performance.now() - started).toBeGreaterThanOrEqual(150);
  });

  it("a client waiting for the DATA answer is not timed out while accept() works", async () => {
    const h = await start({
      timeouts: { socketMs: 100 },
      accept: async (_session, body) => {
        await consume(body);
        await sleep(400);
      },
    });
    const client = await connect(h.port);
    expect(await client.reply()).toMatch(/^220 /);
    await client.transaction("a@sender.test", ["info@example.com"]);
    client.write("Subject: slow disk\r\n\r\nbody\r\n.\r\n");
    expect(await client.reply()).toMatch(/^250 Ok /);
  });

  it("reverse DNS that never answers neither delays the greeting nor holds DATA past its timeout", async () => {
    const h = await start({ reverseDns: { timeoutMs: 1_000, resolve: () => new Promise(() => undefined) } });
    const started = performance.now();
    const client = await connect(h.port);
    expect(await client.reply()).toMatch(/^220 /);
    expect(performance.now() - started).toBeLessThan(500);
    await client.transaction("a@sender.test", ["info@example.com"]);
    client.write("Subject: no dns\r\n\r\nbody\r\n.\r\n");
    expect(await client.reply()).toMatch(/^250 Ok /);
    expect(performance.now() - started).toBeLessThan(3_000);
    expect(h.stored[0]!.session.client.reverseDns).toBeNull();
  });

  it("the system resolver (default on) does not slow sessions here either", async () => {
    const h = await start({ reverseDns: true });
    const started = performance.now();
    const client = await connect(h.port);
    expect(await client.reply()).toMatch(/^220 /);
    await client.transaction("a@sender.test", ["info@example.com"]);
    client.write("Subject: system dns\r\n\r\nbody\r\n.\r\n");
    expect(await client.reply()).toMatch(/^250 Ok /);
    // The lookup is bounded by its 1 s default whatever DNS does.
    expect(performance.now() - started).toBeLessThan(2_500);
  });
});

describe("close(grace)", () => {
  it("refuses new connections, tells idle sessions 421, lets a transaction finish, then closes", async () => {
    const h = await start({});
    const idle = await connect(h.port);
    expect(await idle.reply()).toMatch(/^220 /);
    const busy = await connect(h.port);
    expect(await busy.reply()).toMatch(/^220 /);
    await busy.transaction("a@sender.test", ["info@example.com"]);

    const closed = h.listener.close(5_000);
    expect(await idle.reply()).toBe(LISTENER_REPLIES.shuttingDown);
    await idle.closed();
    await expect(
      new Promise((resolve, reject) => net.connect({ port: h.port, host: "127.0.0.1" }).once("connect", resolve).once("error", reject)),
    ).rejects.toThrow(/ECONNREFUSED/);

    busy.write("Subject: last one\r\n\r\nbody\r\n.\r\n");
    expect(await busy.reply()).toMatch(/^250 Ok /);
    expect(await busy.command("MAIL FROM:<a@sender.test>")).toBe(LISTENER_REPLIES.shuttingDown);
    await busy.closed();
    await closed;
    expect(h.stored).toHaveLength(1);
    expect(h.listener.connections()).toBe(0);
  });

  it("after the grace period every remaining session is told 421 and closed", async () => {
    const h = await start({});
    const busy = await connect(h.port);
    expect(await busy.reply()).toMatch(/^220 /);
    await busy.transaction("a@sender.test", ["info@example.com"]);
    const started = performance.now();
    await h.listener.close(200);
    expect(performance.now() - started).toBeGreaterThanOrEqual(190);
    expect(await busy.reply()).toBe(LISTENER_REPLIES.shuttingDown);
    await busy.closed();
    expect(h.stored).toEqual([]);
  });
});
