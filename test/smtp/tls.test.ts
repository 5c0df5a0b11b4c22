import tls from "node:tls";
import { describe, expect, it } from "vitest";
import { REPLIES } from "../../src/rules/recipient-policy.js";
import { compileFilters } from "../../src/rules/filters.js";
import { SmtpListener } from "../../src/smtp/index.js";
import { HOSTNAME, IDENTITIES, RULES, harnessPerTest, testCertificate } from "./fixture.js";

const { start, connect: connectTo } = harnessPerTest();
const connect = (port: number, options: { tls?: boolean } = {}) => connectTo(port, "127.0.0.1", options);

describe("STARTTLS", () => {
  it("is offered with a certificate; TlsPolicy Require recipients are accepted only after it", async () => {
    const harness = await start({ tls: await testCertificate() });
    const client = await connect(harness.port);
    expect(await client.reply()).toMatch(/^220 /);
    expect((await client.command("EHLO client.test")).split("\n")).toContain("250-STARTTLS");
    expect(await client.command("MAIL FROM:<a@sender.test>")).toBe("250 Accepted");
    expect(await client.command("RCPT TO:<user@secure.example.net>")).toBe(REPLIES.mustStartTls);
    expect(await client.command("RSET")).toMatch(/^250 /);

    expect(await client.command("STARTTLS")).toBe("220 Ready to start TLS");
    await client.startTls();
    const ehlo = await client.command("EHLO client.test");
    expect(ehlo).not.toContain("STARTTLS");
    await client.transaction("a@sender.test", ["user@secure.example.net"]);
    client.write("Subject: secret\r\n\r\nbody\r\n.\r\n");
    expect(await client.reply()).toMatch(/^250 Ok /);
    expect(harness.stored[0]!.session.client.tls).toBe(true);
    expect(harness.events).toContainEqual(expect.objectContaining({ type: "tls", protocol: expect.stringMatching(/^TLS/) }));
  });
});

describe("implicit TLS listener", () => {
  it("speaks TLS from the first byte next to a plain listener; the session counts as TLS", async () => {
    const harness = await start({
      tls: await testCertificate(),
      listen: [
        { host: "127.0.0.1", port: 0 },
        { host: "127.0.0.1", port: 0, implicitTls: true },
      ],
    });
    const [plain, implicit] = harness.listener.addresses();
    expect(plain).toMatchObject({ implicitTls: false });
    expect(implicit).toMatchObject({ implicitTls: true });

    const client = await connect(implicit!.port, { tls: true });
    expect(await client.reply()).toBe(`220 ${HOSTNAME} ESMTP`);
    const ehlo = await client.command("EHLO client.test");
    expect(ehlo).not.toContain("STARTTLS");
    await client.transaction("a@sender.test", ["user@secure.example.net"]);
    client.write("Subject: secret\r\n\r\nbody\r\n.\r\n");
    expect(await client.reply()).toMatch(/^250 Ok /);
    expect(harness.stored[0]!.session.client.tls).toBe(true);

    const clear = await connect(plain!.port);
    expect(await clear.reply()).toMatch(/^220 /);
  });

  it("a client that does not speak TLS, or says nothing, is dropped without a session", async () => {
    const harness = await start({
      tls: await testCertificate(),
      listen: [{ host: "127.0.0.1", port: 0, implicitTls: true }],
      timeouts: { socketMs: 200 },
    });
    const plain = await connect(harness.port);
    plain.write("EHLO not-tls.test\r\n");
    await plain.closed();
    const silent = await connect(harness.port);
    const started = Date.now();
    await silent.closed();
    expect(Date.now() - started).toBeGreaterThanOrEqual(150);
    expect(harness.events.filter((event) => event.type === "refused")).toEqual([
      expect.objectContaining({ reason: "tls-handshake-failed" }),
      expect.objectContaining({ reason: "tls-handshake-failed", error: "TLS handshake timed out" }),
    ]);
    expect(harness.events.some((event) => event.type === "connect")).toBe(false);
  });

  it("needs a certificate", async () => {
    await expect(
      SmtpListener.start({
        listen: [{ host: "127.0.0.1", port: 0, implicitTls: true }],
        hostname: HOSTNAME,
        policy: { ruleSet: () => RULES, identities: () => IDENTITIES, filters: () => compileFilters([]) },
        random: () => new Uint8Array(25),
        accept: async () => undefined,
      }),
    ).rejects.toThrow(/tls option/);
  });

  it("the certificate served is the configured one", async () => {
    const certificate = await testCertificate();
    const harness = await start({ tls: certificate, listen: [{ host: "127.0.0.1", port: 0, implicitTls: true }] });
    const served = await new Promise<string>((resolve, reject) => {
      const socket = tls.connect({ port: harness!.port, host: "127.0.0.1", rejectUnauthorized: false }, () => {
        resolve(socket.getPeerX509Certificate()?.toString() ?? "");
        socket.destroy();
      });
      socket.once("error", reject);
    });
    expect(served.replace(/\s/g, "")).toBe(certificate.cert.replace(/\s/g, ""));
  });
});
