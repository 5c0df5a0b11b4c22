import { describe, expect, it } from "vitest";
import { canonicalIp, compileFilters, decideIp } from "../../src/rules/filters.js";
import type { IpFilter } from "../../src/rules/model.js";

const filter = (name: string, policy: "Allow" | "Block", cidr: string): IpFilter => ({ name, policy, cidr });

describe("IP filters (docs/behaviour.md §4, connect)", () => {
  const filters = compileFilters([
    filter("block-net", "Block", "10.0.0.0/8"),
    filter("allow-host", "Allow", "10.1.2.3"),
    filter("allow-wide", "Allow", "192.168.0.0/16"),
    filter("block-narrow", "Block", "192.168.1.0/24"),
    filter("block-v6", "Block", "2001:db8::/32"),
    filter("allow-v6-host", "Allow", "2001:db8::25"),
  ]);

  it.each([
    ["10.9.9.9", "block", "block-net"],
    ["10.1.2.3", "allow", "allow-host"],
    // Allow wins over Block whatever the prefix lengths: the Block here is the narrower one.
    ["192.168.1.7", "allow", "allow-wide"],
    ["192.168.2.7", "allow", "allow-wide"],
    ["172.16.0.1", "none", null],
    ["2001:db8::1", "block", "block-v6"],
    ["2001:db8::25", "allow", "allow-v6-host"],
    ["2001:0db8:0000:0000:0000:0000:0000:0025", "allow", "allow-v6-host"],
    ["2001:db9::1", "none", null],
    // Dual-stack sockets report IPv4 clients as IPv4-mapped IPv6.
    ["::ffff:10.9.9.9", "block", "block-net"],
    ["::FFFF:10.1.2.3", "allow", "allow-host"],
    ["fe80::1%eth0", "none", null],
    ["not-an-ip", "none", null],
  ])("%s -> %s (%s)", (ip, decision, name) => {
    expect(decideIp(filters, ip)).toEqual({ decision, filter: name });
  });

  it("an IPv4 range never matches an IPv6 client with the same numeric value", () => {
    const v4 = compileFilters([filter("all-v4", "Block", "0.0.0.0/0")]);
    expect(decideIp(v4, "::1").decision).toBe("none");
    expect(decideIp(v4, "127.0.0.1").decision).toBe("block");
    const v6 = compileFilters([filter("all-v6", "Block", "::/0")]);
    expect(decideIp(v6, "127.0.0.1").decision).toBe("none");
    expect(decideIp(v6, "::1").decision).toBe("block");
  });

  it("no filters: every client goes on", () => {
    expect(decideIp(compileFilters([]), "203.0.113.5")).toEqual({ decision: "none", filter: null });
  });

  it("reads IPv4 clients as ip-cidr's ranges do, at every prefix length and both range ends", () => {
    let state = 11;
    const next = (): number => {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      return state;
    };
    const dotted = (value: number): string => [24, 16, 8, 0].map((shift) => (value >>> shift) & 255).join(".");
    for (let round = 0; round < 500; round++) {
      const prefix = next() % 33;
      const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
      const start = (next() & mask) >>> 0;
      const end = (start | (~mask >>> 0)) >>> 0;
      const filters = compileFilters([filter("range", "Block", `${dotted(start)}/${prefix}`)]);
      for (const inside of [start, end]) {
        expect(decideIp(filters, dotted(inside)).decision, `${dotted(inside)} in ${dotted(start)}/${prefix}`).toBe("block");
        expect(decideIp(filters, `::ffff:${dotted(inside)}`).decision).toBe("block");
      }
      if (start > 0) expect(decideIp(filters, dotted(start - 1)).decision).toBe("none");
      if (end < 0xffffffff) expect(decideIp(filters, dotted(end + 1)).decision).toBe("none");
    }
  });
});

describe("canonicalIp: one form of a client address (docs/behaviour.md §4)", () => {
  it("an IPv4-mapped IPv6 address in any notation is the IPv4 address", () => {
    for (const mapped of ["::ffff:203.0.113.5", "::FFFF:cb00:7105", "0:0:0:0:0:ffff:cb00:7105", "0000:0000:0000:0000:0000:ffff:203.0.113.5"]) {
      expect(canonicalIp(mapped), mapped).toBe("203.0.113.5");
    }
  });

  it("other IPv6 addresses take their RFC 5952 form, zone kept; anything else stays as it is", () => {
    expect(canonicalIp("2001:DB8:0:0:0:0:0:7")).toBe("2001:db8::7");
    expect(canonicalIp("::ffff:0:102:304")).toBe("::ffff:0:102:304");
    expect(canonicalIp("fe80::0:1%eth0")).toBe("fe80::1%eth0");
    expect(canonicalIp("198.51.100.7")).toBe("198.51.100.7");
    expect(canonicalIp("not an address")).toBe("not an address");
  });

  it("decideIp reads a hex-mapped client as the IPv4 address it is", () => {
    const filters = compileFilters([filter("partner", "Allow", "198.51.100.0/24"), filter("all", "Block", "0.0.0.0/0")]);
    expect(decideIp(filters, "::ffff:cb00:7105")).toEqual({ decision: "block", filter: "all" });
    expect(decideIp(filters, "::ffff:c633:6407")).toEqual({ decision: "allow", filter: "partner" });
  });
});
