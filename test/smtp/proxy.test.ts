import net from "node:net";
import tls from "node:tls";
import { describe, expect, it } from "vitest";
import { REPLIES } from "../../src/rules/acceptance.js";
import { LISTENER_REPLIES } from "../../src/smtp/index.js";
import { ProxyHeaderError, parseProxyHeader } from "../../src/smtp/proxy.js";
import { HOSTNAME, harnessPerTest, testCertificate } from "./fixture.js";

const { start, connect } = harnessPerTest();

describe("PROXY v1 header parsing", () => {
  it("reads TCP4 and TCP6 sources", () => {
    expect(parseProxyHeader("PROXY TCP4 198.51.100.7 192.0.2.1 56324 25\r\n")).toEqual({ ip: "198.51.100.7", port: 56324 });
    expect(parseProxyHeader("PROXY TCP6 2001:db8::7 2001:db8::1 56324 25\r\n")).toEqual({ ip: "2001:db8::7", port: 56324 });
  });

  it("UNKNOWN means: use the connection's own peer", () => {
    expect(parseProxyHeader("PROXY UNKNOWN\r\n")).toBeNull();
    expect(parseProxyHeader("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n")).toBeNull();
  });

  for (const bad of [
    "PROXY TCP4 198.51.100.7 192.0.2.1 56324 25\n",
    "PROXY TCP4 2001:db8::7 192.0.2.1 56324 25\r\n",
    "PROXY TCP6 198.51.100.7 2001:db8::1 56324 25\r\n",
    "PROXY TCP4 198.51.100.7 192.0.2.1 65536 25\r\n",
    "PROXY TCP4 198.51.100.7 192.0.2.1 056 25\r\n",
    "PROXY TCP4 198.51.100.7 192.0.2.1 56324\r\n",
    "PROXY UDP4 198.51.100.7 192.0.2.1 56324 25\r\n",
    "PROXY TCP4 198.51.100.7\r\nfoo 192.0.2.1 56324 25\r\n",
    "EHLO client.test\r\n",
  ]) {
    it(`refuses ${JSON.stringify(bad)}`, () => {
      expect(() => parseProxyHeader(bad)).toThrow(ProxyHeaderError);
    });
  }
});

describe("PROXY protocol from listed load balancers", () => {
  it("the proxied client is the one filters, Received and events see", async () => {
    const h = await start({ proxyProtocolFrom: ["127.0.0.1"], reverseDns: { resolve: async (ip) => [`host-${ip.replace(/\./g, "-")}.test`] } });
    const client = await connect(h.port);
    client.write("PROXY TCP4 198.51.100.7 127.0.0.1 40000 25\r\n");
    expect(await client.reply()).toBe(`220 ${HOSTNAME} ESMTP`);
    await client.transaction("a@sender.test", ["info@example.com"]);
    client.write("Subject: proxied\r\n\r\nbody\r\n.\r\n");
    expect(await client.reply()).toMatch(/^250 Ok /);
    const stored = h.stored[0]!;
    expect(stored.session.client).toMatchObject({ ip: "198.51.100.7", port: 40000, reverseDns: "host-198-51-100-7.test" });
    expect(stored.message.toString("latin1")).toContain("(host-198-51-100-7.test [198.51.100.7]) by");
    expect(h.events).toContainEqual(expect.objectContaining({ type: "connect", ip: "198.51.100.7", proxiedBy: "127.0.0.1" }));
  });

  it("a Block filter applies to the proxied address, IPv4-mapped IPv6 included", async () => {
    const h = await start({
      proxyProtocolFrom: ["127.0.0.0/8"],
      filters: [{ name: "bad-net", policy: "Block", cidr: "203.0.113.0/24" }],
    });
    const blocked = await connect(h.port);
    blocked.write("PROXY TCP4 203.0.113.5 127.0.0.1 40000 25\r\n");
    expect(await blocked.reply()).toBe(REPLIES.accessDenied);
    await blocked.closed();

    const mapped = await connect(h.port);
    mapped.write("PROXY TCP6 ::ffff:203.0.113.9 ::1 40000 25\r\n");
    expect(await mapped.reply()).toBe(REPLIES.accessDenied);

    const fine = await connect(h.port);
    fine.write("PROXY TCP4 198.51.100.7 127.0.0.1 40000 25\r\n");
    expect(await fine.reply()).toMatch(/^220 /);
  });

  it("bytes behind the header in the same segment are the session's first command", async () => {
    const h = await start({ proxyProtocolFrom: ["127.0.0.1/32"] });
    const client = await connect(h.port);
    client.write("PROXY TCP4 198.51.100.7 127.0.0.1 40000 25\r\nEHLO client.test\r\n");
    expect(await client.reply()).toMatch(/^220 /);
    expect(await client.reply()).toMatch(/^250-/);
  });

  it("PROXY UNKNOWN keeps the balancer's own address", async () => {
    const h = await start({ proxyProtocolFrom: ["127.0.0.1"] });
    const client = await connect(h.port);
    client.write("PROXY UNKNOWN\r\n");
    expect(await client.reply()).toMatch(/^220 /);
    expect(h.events).toContainEqual(expect.objectContaining({ type: "connect", ip: "127.0.0.1", proxiedBy: "127.0.0.1" }));
  });

  it("a listed balancer that sends no valid header is dropped before any greeting", async () => {
    const h = await start({ proxyProtocolFrom: ["127.0.0.1"], timeouts: { socketMs: 200 } });
    const garbage = await connect(h.port);
    garbage.write("EHLO client.test\r\n");
    await garbage.closed();
    const silent = await connect(h.port);
    await silent.closed();
    const long = await connect(h.port);
    long.write(`PROXY TCP4 ${"1".repeat(200)}`);
    await long.closed();
    for (const client of [garbage, silent, long]) expect(client.pendingReplies()).toEqual([]);
    expect(h.events.filter((event) => event.type === "refused").map((event) => event.type === "refused" && event.reason)).toEqual([
      "proxy-header-invalid",
      "proxy-header-invalid",
      "proxy-header-invalid",
    ]);
  });

  it("the header, then TLS, on an implicit-TLS listener (the balancer passes TLS through)", async () => {
    const h = await start({
      proxyProtocolFrom: ["127.0.0.1"],
      tls: await testCertificate(),
      listen: [{ host: "127.0.0.1", port: 0, implicitTls: true }],
    });
    const raw = net.connect({ port: h.port, host: "127.0.0.1" });
    await new Promise<void>((resolve) => raw.once("connect", resolve));
    raw.write("PROXY TCP4 198.51.100.7 127.0.0.1 40000 465\r\n");
    const greeting = await new Promise<string>((resolve, reject) => {
      const secure = tls.connect({ socket: raw, rejectUnauthorized: false });
      secure.once("data", (data: Buffer) => {
        resolve(data.toString());
        secure.destroy();
      });
      secure.once("error", reject);
    });
    expect(greeting).toBe(`220 ${HOSTNAME} ESMTP\r\n`);
    expect(h.events).toContainEqual(expect.objectContaining({ type: "connect", ip: "198.51.100.7", tls: true }));
  });

  it("per-IP limits count the proxied address", async () => {
    const h = await start({ proxyProtocolFrom: ["127.0.0.1"], maxConnectionsPerIp: 1 });
    const first = await connect(h.port);
    first.write("PROXY TCP4 198.51.100.7 127.0.0.1 40000 25\r\n");
    expect(await first.reply()).toMatch(/^220 /);
    const other = await connect(h.port);
    other.write("PROXY TCP4 198.51.100.8 127.0.0.1 40001 25\r\n");
    expect(await other.reply()).toMatch(/^220 /);
    const same = await connect(h.port);
    same.write("PROXY TCP4 198.51.100.7 127.0.0.1 40002 25\r\n");
    expect(await same.reply()).toBe(LISTENER_REPLIES.tooManyConnectionsFromIp);
  });
});

describe("PROXY header from a peer that is not listed", () => {
  it("is refused and the session ends; the claimed address is never used", async () => {
    const h = await start({ proxyProtocolFrom: ["10.0.0.0/8"] });
    const client = await connect(h.port);
    expect(await client.reply()).toMatch(/^220 /);
    expect(await client.command("PROXY TCP4 198.51.100.7 127.0.0.1 40000 25")).toBe(LISTENER_REPLIES.proxyNotAllowed);
    await client.closed();
    expect(h.events).toContainEqual(expect.objectContaining({ type: "refused", reason: "proxy-header-not-allowed", ip: "127.0.0.1" }));
    expect(h.events.filter((event) => event.type === "connect").map((event) => event.type === "connect" && event.ip)).toEqual(["127.0.0.1"]);
  });

  it("is refused without any proxyProtocolFrom too, even sent before the greeting arrives", async () => {
    const h = await start({});
    const client = await connect(h.port);
    client.write("PROXY TCP4 198.51.100.7 127.0.0.1 40000 25\r\nEHLO client.test\r\n");
    const replies = [await client.reply(), await client.reply()];
    expect(replies).toEqual([`220 ${HOSTNAME} ESMTP`, LISTENER_REPLIES.proxyNotAllowed]);
    await client.closed();
  });

  it("an IPv6 peer outside an IPv4 list is not expected to send one", async () => {
    const h = await start({ proxyProtocolFrom: ["127.0.0.1"], listen: [{ host: "::1", port: 0 }] });
    const client = await connect(h.port, "::1");
    expect(await client.reply()).toMatch(/^220 /);
    expect(await client.command("EHLO client.test")).toMatch(/^250-/);
  });
});
