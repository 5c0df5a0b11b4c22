// Authentication's worker threads: a worker that dies mid-message (here of the heap limit that
// bounds it) or hangs costs its messages their verdicts and nothing else.
import { afterEach, describe, expect, it } from "vitest";
import { authenticateMessage } from "../../src/mail/auth.js";
import type { AuthInput, DnsResolver } from "../../src/mail/auth.js";
import { AuthPool } from "../../src/mail/auth-pool.js";

const SPF_PASS: DnsResolver = async (name, rrtype) => {
  if (rrtype === "TXT" && name === "example.org") return [["v=spf1 ip4:192.0.2.10 -all"]];
  throw Object.assign(new Error(`ENOTFOUND ${name}`), { code: "ENOTFOUND" });
};

function input(message: AuthInput["message"]): AuthInput {
  return { message, ip: "192.0.2.10", helo: "mail.example.org", mailFrom: "sender@example.org", hostname: "mx.receiptd.test" };
}

/** 8 MB of short fields, which mailauth parses into far more than 32 MB of heap, then a body that is still arriving. */
async function* heapExhausting(): AsyncGenerator<Buffer> {
  const fields = Buffer.from("X-A: a\r\n".repeat(8192));
  for (let i = 0; i < 128; i++) yield fields;
  yield Buffer.from("From: sender@example.org\r\n\r\n");
  for (let i = 0; i < 50; i++) {
    await new Promise((resolve) => setTimeout(resolve, 5));
    yield Buffer.from("body line\r\n".repeat(1000));
  }
}

const ordinary = () => Buffer.from("From: sender@example.org\r\nSubject: hi\r\n\r\nhello\r\n");

const pools: AuthPool[] = [];
afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.close()));
});

function pool(heapMb: number, cpuAllowanceMs?: number): AuthPool {
  const created = new AuthPool({ size: 1, heapMb, ...(cpuAllowanceMs ? { cpuAllowanceMs } : {}) });
  pools.push(created);
  return created;
}

describe("AuthPool", { timeout: 60_000 }, () => {
  it("gives PROCESSING_FAILED and no headers when the worker dies mid-message, and authenticates the next message on a new one", async () => {
    const small = pool(32);
    const crashed = await authenticateMessage(input(heapExhausting()), { resolver: SPF_PASS, pool: small });
    expect(crashed).toEqual({ verdicts: { spf: "PROCESSING_FAILED", dkim: "PROCESSING_FAILED", dmarc: "PROCESSING_FAILED" }, headers: [] });

    const next = await authenticateMessage(input(ordinary()), { resolver: SPF_PASS, pool: small });
    expect(next.verdicts).toEqual({ spf: "PASS", dkim: "GRAY", dmarc: "GRAY" });
    expect(next.headers.map((h) => h.name)).toEqual(["Received-SPF", "Authentication-Results"]);
  });

  it("gives PROCESSING_FAILED when the worker stays silent past the DNS budget and its allowance, and replaces it", async () => {
    // The same message keeps mailauth busy for seconds with heap enough; the allowance here is 200 ms.
    const impatient = pool(1024, 200);
    const hung = await authenticateMessage(input(heapExhausting()), { resolver: SPF_PASS, pool: impatient, timeoutMs: 100 });
    expect(hung).toEqual({ verdicts: { spf: "PROCESSING_FAILED", dkim: "PROCESSING_FAILED", dmarc: "PROCESSING_FAILED" }, headers: [] });

    // A budget that leaves the new worker time to load mailauth.
    const next = await authenticateMessage(input(ordinary()), { resolver: SPF_PASS, pool: impatient, timeoutMs: 3_000 });
    expect(next.verdicts.spf).toBe("PASS");
  });

  it("streams a 120 MB message to the worker with the process growing by far less than the message", async () => {
    const line = Buffer.from(`${"0123456789".repeat(10)}\r\n`.repeat(1000));
    let peak = 0;
    async function* large(mb: number): AsyncGenerator<Buffer> {
      yield Buffer.from("From: sender@example.org\r\nSubject: large\r\n\r\n");
      for (let i = 0; i < mb * 10; i++) {
        // Fresh bytes each time, as a socket gives them.
        yield Buffer.from(line);
        if (i % 40 === 0) peak = Math.max(peak, process.memoryUsage().rss);
      }
    }
    const shared = pool(512);
    // The first message grows the heaps and arenas to their working size.
    await authenticateMessage(input(large(8)), { resolver: SPF_PASS, pool: shared });
    const before = process.memoryUsage().rss;
    peak = 0;
    const result = await authenticateMessage(input(large(120)), { resolver: SPF_PASS, pool: shared });
    expect(result.verdicts.spf).toBe("PASS");
    expect(peak - before).toBeLessThan(60 * 1024 * 1024);
  });

  it("authenticates the same message when the worker's heap allows it: the failure above is the worker's death", async () => {
    const large = await authenticateMessage(input(heapExhausting()), { resolver: SPF_PASS, pool: pool(1024) });
    expect(large.verdicts.spf).toBe("PASS");
  });
});
