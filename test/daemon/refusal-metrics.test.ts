import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { reportSmtp } from "../../src/daemon/daemon.js";
import { createLogger } from "../../src/ops/log.js";
import { createMetrics } from "../../src/ops/metrics.js";
import type { Metrics } from "../../src/ops/metrics.js";
import type { SmtpEvent } from "../../src/smtp/index.js";
import type { RawSmtp } from "../helpers/smtp-client.js";
import { eventually, harnessPerTest } from "../smtp/fixture.js";
import type { HarnessOptions } from "../smtp/fixture.js";

const { start, connect } = harnessPerTest();

const quiet = createLogger({ stream: new Writable({ write: (_chunk, _encoding, done) => done() }), format: "json" });

/** receiptd_smtp_refused_total as /metrics renders it, by "stage reason". */
async function refusals(metrics: Metrics): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const [, stage, reason, value] of (await metrics.render()).matchAll(
    /^receiptd_smtp_refused_total\{stage="([^"]*)",reason="([^"]*)"\} (\S+)$/gm,
  )) {
    counts[`${stage} ${reason}`] = Number(value);
  }
  return counts;
}

/** A listener whose events go through the daemon's reporting into its metrics. */
async function reported(options: HarnessOptions = {}) {
  const metrics = createMetrics();
  const h = await start({ ...options, onEvent: (event) => reportSmtp(event, quiet, metrics) });
  const session = async (): Promise<RawSmtp> => {
    const client = await connect(h.port);
    expect(await client.reply()).toMatch(/^220 /);
    expect(await client.command("EHLO client.test")).toMatch(/^250[- ]/);
    return client;
  };
  return { h, metrics, session };
}

describe("refusals in /metrics: each labelled with the reason its decision gave", () => {
  it("at connect: an IP filter's Block, and the per-address limit", async () => {
    const { h, metrics } = await reported({
      filters: [{ name: "block-two", policy: "Block", cidr: "127.0.0.2/32" }],
      maxConnectionsPerIp: 1,
    });
    const blocked = await connect(h.port, "127.0.0.1", { localAddress: "127.0.0.2" });
    expect(await blocked.reply()).toBe("554 5.7.1 Access denied");
    const first = await connect(h.port);
    expect(await first.reply()).toMatch(/^220 /);
    const second = await connect(h.port);
    expect(await second.reply()).toMatch(/^421 /);
    expect(await refusals(metrics)).toEqual({ "connect ip_filter": 1, "connect too_many_connections_from_ip": 1 });
  });

  it("at MAIL FROM and RCPT TO: the listener's own refusals and decideRecipient's", async () => {
    const { metrics, session } = await reported({ maxRecipients: 1, maxMessageBytes: 1000 });
    const client = await session();
    expect(await client.command("MAIL FROM:<a@sender.test> SIZE=1001")).toMatch(/^552 /);
    expect(await client.command("MAIL FROM:<j\u00fcrg@sender.test>")).toMatch(/^553 /);
    expect(await client.command("MAIL FROM:<a@sender.test>")).toBe("250 Accepted");
    expect(await client.command("RCPT TO:<j\u00fcrg@example.org>")).toMatch(/^553 /);
    expect(await client.command("RCPT TO:<a/b@example.org>")).toMatch(/^553 /);
    expect(await client.command("RCPT TO:<someone@example.net>")).toMatch(/^550 /);
    expect(await client.command("RCPT TO:<nobody@example.com>")).toMatch(/^550 /);
    expect(await client.command("RCPT TO:<a@secure.example.net>")).toMatch(/^530 /);
    expect(await client.command("RCPT TO:<info@example.com>")).toBe("250 Accepted");
    expect(await client.command("RCPT TO:<a@example.org>")).toMatch(/^452 /);
    expect(await refusals(metrics)).toEqual({
      "mail size": 1,
      "mail smtputf8_required": 1,
      "rcpt smtputf8_required": 1,
      "rcpt unstorable_local_part": 1,
      "rcpt relaying_denied": 1,
      "rcpt mailbox_unavailable": 1,
      "rcpt tls_required": 1,
      "rcpt too_many_recipients": 1,
    });
  });

  it("at DATA: size, smuggling and the header block's bounds", async () => {
    const { metrics, session } = await reported({ maxMessageBytes: 10_000 });
    const client = await session();
    const refusedData = async (content: string): Promise<string> => {
      await client.transaction("a@sender.test", ["info@example.com"]);
      client.write(content);
      return client.reply();
    };
    expect(await refusedData(`Subject: big\r\n\r\n${"x".repeat(20_000)}\r\n.\r\n`)).toMatch(/^552 /);
    expect(await refusedData("Subject: first\r\n\r\nbody\n.\nmore\r\n.\r\n")).toMatch(/^554 /);
    expect(await refusedData(`${"Received: from x\r\n".repeat(51)}\r\nbody\r\n.\r\n`)).toBe(
      "552 5.3.4 Message header block exceeds local limits",
    );
    expect(await refusals(metrics)).toEqual({ "data size": 1, "data smuggling": 1, "data header_limit": 1 });
  });

  it("the limit in all, shutting down, a command deadline and a failing accept()", async () => {
    const { h, metrics, session } = await reported({
      maxConnections: 1,
      timeouts: { commandMs: 300 },
      accept: () => Promise.reject(new Error("disk full")),
    });
    const client = await session();
    const second = await connect(h.port, "127.0.0.1", { localAddress: "127.0.0.3" });
    expect(await second.reply()).toBe("421 4.7.0 Too many connections, try again later");
    await client.transaction("a@sender.test", ["info@example.com"]);
    client.write("Subject: x\r\n\r\nbody\r\n.\r\n");
    expect(await client.reply()).toMatch(/^451 /);
    client.write("NOO");
    expect(await client.reply()).toBe("421 4.4.2 Command not received in time, closing connection");
    await client.closed();
    await eventually(() => h.listener.connections() === 0);

    const last = await session();
    expect(await last.command("MAIL FROM:<a@sender.test>")).toBe("250 Accepted");
    // Its transaction may finish within the grace; a new one is refused.
    const closed = h.listener.close(5_000);
    expect(await last.command("RSET")).toMatch(/^250 /);
    expect(await last.command("MAIL FROM:<b@sender.test>")).toMatch(/^421 4\.3\.2 /);
    await closed;
    expect(await refusals(metrics)).toEqual({
      "connect too_many_connections": 1,
      "data accept_failed": 1,
      "command deadline": 1,
      "mail shutting_down": 1,
    });
  });

  it("come from the event's reason, not its reply text", async () => {
    const metrics = createMetrics();
    const base = { session: "s", ip: "192.0.2.1" } as const;
    const events: SmtpEvent[] = [
      { ...base, type: "rcpt", recipient: "a@example.com", accepted: false, reason: "relaying-denied", reply: "550 5.7.1 Relaying denied" },
      { ...base, type: "rcpt", recipient: "a@example.com", accepted: false, reason: "relaying-denied", reply: "550 5.7.1 Not through us" },
      // Text the old parser read as another reason.
      { ...base, type: "rcpt", recipient: "a@example.com", accepted: false, reason: "unstorable-local-part", reply: "550 5.1.1 mailbox unavailable" },
      { ...base, type: "mail", mailFrom: "a@example.com", accepted: false, reason: "smtputf8-required", reply: "421 4.3.2 Something else" },
    ];
    for (const event of events) reportSmtp(event, quiet, metrics);
    expect(await refusals(metrics)).toEqual({
      "rcpt relaying_denied": 2,
      "rcpt unstorable_local_part": 1,
      "mail smtputf8_required": 1,
    });
  });
});
