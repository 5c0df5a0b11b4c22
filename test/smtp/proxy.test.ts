import net from "node:net";
import tls from "node:tls";
import { describe, expect, it } from "vitest";
import { REPLIES } from "../../src/rules/recipient-policy.js";
import { LISTENER_REPLIES } from "../../src/smtp/index.js";
import { ProxyHeaderError, parseProxyHeader, parseProxyV2Header } from "../../src/smtp/proxy.js";
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

const V2_SIGNATURE = Buffer.from("0d0a0d0a000d0a515549540a", "hex");

/** A v2 header as proxy-protocol.txt section 2.2 lays it out, written out here byte by byte. */
function v2Header(options: { command?: number; family?: number; version?: number; addresses?: Buffer; tlvs?: Buffer } = {}): Buffer {
  const { command = 0x1, family = 0x11, version = 0x2, addresses = tcp4("198.51.100.7", "192.0.2.1", 56324, 25), tlvs = Buffer.alloc(0) } = options;
  const fixed = Buffer.alloc(4);
  fixed[0] = (version << 4) | command;
  fixed[1] = family;
  fixed.writeUInt16BE(addresses.length + tlvs.length, 2);
  return Buffer.concat([V2_SIGNATURE, fixed, addresses, tlvs]);
}

function tcp4(source: string, destination: string, sourcePort: number, destinationPort: number): Buffer {
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(sourcePort, 0);
  ports.writeUInt16BE(destinationPort, 2);
  return Buffer.concat([Buffer.from(source.split(".").map(Number)), Buffer.from(destination.split(".").map(Number)), ports]);
}

function tcp6(source: Buffer, destination: Buffer, sourcePort: number, destinationPort: number): Buffer {
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(sourcePort, 0);
  ports.writeUInt16BE(destinationPort, 2);
  return Buffer.concat([source, destination, ports]);
}

const DOCUMENTATION_V6 = Buffer.from("20010db8000000000000000000000007", "hex");
/** AWS's Network Load Balancer appends its VPC endpoint ID as a TLV of type 0xEA. */
const AWS_TLV = Buffer.concat([Buffer.from([0xea, 0x00, 0x17, 0x01]), Buffer.from("vpce-08d2bf15fac5001c9")]);

describe("PROXY v2 header parsing", () => {
  it("reads TCP4 and TCP6 sources, skipping the TLVs after the addresses", () => {
    expect(parseProxyV2Header(v2Header())).toEqual({ ip: "198.51.100.7", port: 56324 });
    expect(parseProxyV2Header(v2Header({ family: 0x21, addresses: tcp6(DOCUMENTATION_V6, DOCUMENTATION_V6, 40000, 25), tlvs: AWS_TLV }))).toEqual({
      ip: "2001:db8::7",
      port: 40000,
    });
    const mapped = Buffer.from("00000000000000000000ffffcb007109", "hex");
    expect(parseProxyV2Header(v2Header({ family: 0x21, addresses: tcp6(mapped, mapped, 1, 25) }))).toEqual({ ip: "203.0.113.9", port: 1 });
  });

  it("writes IPv6 sources as the WHATWG URL parser does (RFC 5952)", () => {
    const samples = ["00000000000000000000000000000000", "00010000000000000000000000000000", "20010db8000000000001000000000001", "20010db8000000010001000100010001"];
    for (let i = 0; i < 300; i++) {
      // Zero groups often, so that runs of them of every length and place come up.
      samples.push(Array.from({ length: 8 }, () => (Math.random() < 0.5 ? "0000" : Math.floor(Math.random() * 0x10000).toString(16).padStart(4, "0"))).join(""));
    }
    for (const hex of samples) {
      const address = Buffer.from(hex, "hex");
      if (hex.startsWith("00000000000000000000ffff")) continue;
      const expected = new URL(`http://[${hex.match(/.{4}/g)!.join(":")}]/`).hostname.slice(1, -1);
      expect(parseProxyV2Header(v2Header({ family: 0x21, addresses: tcp6(address, address, 1, 25) }))?.ip, hex).toBe(expected);
    }
  });

  it("LOCAL, UNSPEC and UNIX mean: use the connection's own peer", () => {
    expect(parseProxyV2Header(v2Header({ command: 0x0, family: 0x00, addresses: Buffer.alloc(0) }))).toBeNull();
    expect(parseProxyV2Header(v2Header({ command: 0x0 }))).toBeNull();
    expect(parseProxyV2Header(v2Header({ family: 0x00, addresses: Buffer.alloc(0) }))).toBeNull();
    expect(parseProxyV2Header(v2Header({ family: 0x31, addresses: Buffer.alloc(216) }))).toBeNull();
  });

  const refused: [string, Buffer][] = [
    ["another signature", Buffer.concat([Buffer.from("0d0a0d0a000d0a515549540b", "hex"), v2Header().subarray(12)])],
    ["version 1 in binary", v2Header({ version: 0x1 })],
    ["an unknown command", v2Header({ command: 0x2 })],
    ["UDP over IPv4", v2Header({ family: 0x12 })],
    ["UDP over IPv6", v2Header({ family: 0x22, addresses: tcp6(DOCUMENTATION_V6, DOCUMENTATION_V6, 1, 25) })],
    ["an unknown family", v2Header({ family: 0x41 })],
    ["TCP4 with addresses cut short", v2Header({ addresses: Buffer.alloc(8) })],
    ["TCP6 with IPv4-sized addresses", v2Header({ family: 0x21 })],
    ["a length beyond the bytes", v2Header().subarray(0, 27)],
  ];
  for (const [what, header] of refused) {
    it(`refuses ${what}`, () => {
      expect(() => parseProxyV2Header(header)).toThrow(ProxyHeaderError);
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

  it("an IPv4-mapped source in hex (::ffff:cb00:7105 is 203.0.113.5) is the IPv4 address: a Block applies", async () => {
    const h = await start({
      proxyProtocolFrom: ["127.0.0.1"],
      filters: [{ name: "bad-host", policy: "Block", cidr: "203.0.113.5" }],
    });
    for (const header of ["PROXY TCP6 ::ffff:cb00:7105 ::1 40000 25\r\n", "PROXY TCP6 0:0:0:0:0:FFFF:CB00:7105 ::1 40000 25\r\n"]) {
      const client = await connect(h.port);
      client.write(header);
      expect(await client.reply()).toBe(REPLIES.accessDenied);
      await client.closed();
    }
    const v2 = await connect(h.port);
    const mapped = Buffer.from("00000000000000000000ffffcb007105", "hex");
    v2.write(v2Header({ family: 0x21, addresses: tcp6(mapped, mapped, 40000, 25) }));
    expect(await v2.reply()).toBe(REPLIES.accessDenied);
    const refusals = h.events.filter((event) => event.type === "refused");
    expect(refusals.map((event) => event.ip)).toEqual(["203.0.113.5", "203.0.113.5", "203.0.113.5"]);
  });

  it("a hex-mapped source is held to a block-all allow-list too, and is seen as IPv4 everywhere once let in", async () => {
    const h = await start({
      proxyProtocolFrom: ["127.0.0.1"],
      filters: [
        { name: "partner", policy: "Allow", cidr: "198.51.100.0/24" },
        { name: "all-v4", policy: "Block", cidr: "0.0.0.0/0" },
        { name: "all-v6", policy: "Block", cidr: "::/0" },
      ],
    });
    const outsider = await connect(h.port);
    outsider.write("PROXY TCP6 ::ffff:cb00:7105 ::1 40000 25\r\n");
    expect(await outsider.reply()).toBe(REPLIES.accessDenied);

    const partner = await connect(h.port);
    // 198.51.100.7
    partner.write("PROXY TCP6 ::ffff:c633:6407 ::1 40001 25\r\n");
    expect(await partner.reply()).toMatch(/^220 /);
    await partner.transaction("a@sender.test", ["info@example.com"]);
    partner.write("Subject: mapped\r\n\r\nbody\r\n.\r\n");
    expect(await partner.reply()).toMatch(/^250 Ok /);
    expect(h.stored[0]!.session.client.ip).toBe("198.51.100.7");
    expect(h.stored[0]!.message.toString("latin1")).toContain("(unknown [198.51.100.7]) by");
    const partnerEvents = h.events.filter((event) => "session" in event && event.type !== "refused" && event.ip !== "203.0.113.5");
    expect(new Set(partnerEvents.map((event) => event.ip))).toEqual(new Set(["198.51.100.7"]));
  });

  it("a v2 header, as AWS's Network Load Balancer sends, with its TLV and a command behind it in the same segment", async () => {
    const h = await start({ proxyProtocolFrom: ["127.0.0.1"] });
    const client = await connect(h.port);
    client.write(Buffer.concat([v2Header({ tlvs: AWS_TLV }), Buffer.from("EHLO client.test\r\n")]));
    expect(await client.reply()).toBe(`220 ${HOSTNAME} ESMTP`);
    expect(await client.reply()).toMatch(/^250-/);
    expect(h.events).toContainEqual(expect.objectContaining({ type: "connect", ip: "198.51.100.7", port: 56324, proxiedBy: "127.0.0.1" }));
  });

  it("a v2 header arriving a byte at a time", async () => {
    const h = await start({ proxyProtocolFrom: ["127.0.0.1"] });
    const client = await connect(h.port);
    for (const byte of v2Header({ family: 0x21, addresses: tcp6(DOCUMENTATION_V6, DOCUMENTATION_V6, 40000, 25) })) {
      client.write(Buffer.from([byte]));
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    expect(await client.reply()).toMatch(/^220 /);
    expect(h.events).toContainEqual(expect.objectContaining({ type: "connect", ip: "2001:db8::7", proxiedBy: "127.0.0.1" }));
  });

  it("a v2 LOCAL header (the balancer's health check) keeps the balancer's own address", async () => {
    const h = await start({ proxyProtocolFrom: ["127.0.0.1"] });
    const client = await connect(h.port);
    client.write(v2Header({ command: 0x0, family: 0x00, addresses: Buffer.alloc(0) }));
    expect(await client.reply()).toMatch(/^220 /);
    expect(h.events).toContainEqual(expect.objectContaining({ type: "connect", ip: "127.0.0.1", proxiedBy: "127.0.0.1" }));
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
    const almostV2 = await connect(h.port);
    almostV2.write("\r\n\r\nEHLO client.test\r\n");
    await almostV2.closed();
    const udp = await connect(h.port);
    udp.write(v2Header({ family: 0x12 }));
    await udp.closed();
    for (const client of [garbage, silent, long, almostV2, udp]) expect(client.pendingReplies()).toEqual([]);
    expect(h.events.filter((event) => event.type === "refused").map((event) => event.type === "refused" && event.reason)).toEqual(
      Array(5).fill("proxy-header-invalid"),
    );
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

describe("a dual-stack listener's IPv4 peers", () => {
  it("are seen in IPv4 form by filters and events", async () => {
    const h = await start({ listen: [{ host: "::", port: 0 }], filters: [{ name: "local", policy: "Block", cidr: "127.0.0.2" }] });
    const blocked = await connect(h.port, "127.0.0.1", { localAddress: "127.0.0.2" });
    expect(await blocked.reply()).toBe(REPLIES.accessDenied);
    const fine = await connect(h.port, "127.0.0.1");
    expect(await fine.reply()).toMatch(/^220 /);
    expect(h.events).toContainEqual(expect.objectContaining({ type: "refused", ip: "127.0.0.2" }));
    expect(h.events).toContainEqual(expect.objectContaining({ type: "connect", ip: "127.0.0.1" }));
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

  it("a v2 header ends the session at the QUIT its signature holds; the claimed address is never used", async () => {
    const h = await start({ proxyProtocolFrom: ["10.0.0.0/8"] });
    const client = await connect(h.port);
    expect(await client.reply()).toMatch(/^220 /);
    client.write(Buffer.concat([v2Header(), Buffer.from("EHLO client.test\r\n")]));
    await client.closed();
    expect(client.pendingReplies().at(-1)).toMatch(/^221 /);
    expect(client.pendingReplies().some((reply) => reply.startsWith("250"))).toBe(false);
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
