import { describe, expect, it } from "vitest";
import { reverseLookup, usableHostname } from "../../src/smtp/reverse-dns.js";

describe("reverse DNS for the Received header", () => {
  it("takes names shaped like host names, lower-cased, without the root dot", () => {
    expect(usableHostname("Mail-1.Example.COM.")).toBe("mail-1.example.com");
    expect(usableHostname("_dmarc.example.com")).toBe("_dmarc.example.com");
  });

  it("refuses what a PTR owner could use to forge headers or that is no host name", () => {
    for (const name of ["evil.test\r\nX-Injected: 1", "a b.test", "a..b.test", "-a.test", "a-.test", "", ".", `${"a".repeat(64)}.test`, "[127.0.0.1]"]) {
      expect(usableHostname(name), JSON.stringify(name)).toBeNull();
    }
  });

  it("uses the first usable name of the answer", async () => {
    expect(await reverseLookup(async () => ["bad\nname", "good.example.com"], "192.0.2.1", 1_000)).toBe("good.example.com");
  });

  it("gives null when DNS fails, has nothing usable, or does not answer in time", async () => {
    expect(await reverseLookup(() => Promise.reject(new Error("ENOTFOUND")), "192.0.2.1", 1_000)).toBeNull();
    expect(await reverseLookup(async () => ["bad\nname"], "192.0.2.1", 1_000)).toBeNull();
    const started = Date.now();
    expect(await reverseLookup(() => new Promise(() => undefined), "192.0.2.1", 100)).toBeNull();
    expect(Date.now() - started).toBeLessThan(1_000);
  });
});
