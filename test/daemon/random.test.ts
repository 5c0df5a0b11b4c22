// The pooled randomness behind message and session IDs: fresh bytes every call, any size.
import { describe, expect, it } from "vitest";
import { pooledRandomBytes } from "../../src/daemon/random.js";

describe("pooledRandomBytes", () => {
  it("never hands out the same bytes twice, across refills of the pool", () => {
    const seen = new Set<string>();
    // 25 bytes do not divide 4096, so calls straddle the end of a pool and start a new one.
    for (let i = 0; i < 2000; i++) {
      const bytes = pooledRandomBytes(25);
      expect(bytes.length).toBe(25);
      seen.add(bytes.toString("hex"));
    }
    expect(seen.size).toBe(2000);
  });

  it("serves sizes beyond the pool and of zero", () => {
    expect(pooledRandomBytes(10_000).length).toBe(10_000);
    expect(pooledRandomBytes(0).length).toBe(0);
  });
});
