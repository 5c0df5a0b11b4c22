import { execFile, spawnSync } from "node:child_process";
import nodemailer from "nodemailer";
import { afterEach, describe, expect, it } from "vitest";
import { HOSTNAME, startHarness, testCertificate } from "./fixture.js";
import type { Harness } from "./fixture.js";

let harness: Harness | undefined;

afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

// CI installs swaks (.ci/run) and must run this test; a developer without it gets a skip.
const hasSwaks = spawnSync("swaks", ["--version"]).status === 0 || process.env.CI === "true";

describe("real clients", () => {
  it("nodemailer delivers over STARTTLS; the stored message is what it sent under our two headers", async () => {
    harness = await startHarness({ tls: await testCertificate() });
    const transport = nodemailer.createTransport({
      host: "127.0.0.1",
      port: harness.port,
      secure: false,
      requireTLS: true,
      name: "nodemailer.client.test",
      tls: { rejectUnauthorized: false },
    });
    const info = await transport.sendMail({
      envelope: { from: "sender@sender.test", to: ["info@example.com", "someone@elsewhere.test", "a@example.org"] },
      from: "Sender <sender@sender.test>",
      to: "info@example.com",
      subject: "Hello from nodemailer",
      text: "Line one\n.\nLine three after a lone dot\n",
    });
    transport.close();
    expect(info.accepted).toEqual(["info@example.com", "a@example.org"]);
    expect(info.rejected).toEqual(["someone@elsewhere.test"]);
    expect(info.response).toMatch(/^250 Ok [0-9a-v]{40}$/);
    expect(harness.stored).toHaveLength(1);
    const stored = harness.stored[0]!;
    expect(stored.session).toMatchObject({
      mailFrom: "sender@sender.test",
      recipients: ["info@example.com", "a@example.org"],
      client: { helo: "nodemailer.client.test", tls: true },
    });
    const text = stored.message.toString("utf8");
    expect(text).toMatch(
      new RegExp(`^Return-Path: <sender@sender\\.test>\\r\\nReceived: from nodemailer\\.client\\.test \\(unknown \\[127\\.0\\.0\\.1\\]\\) by ${HOSTNAME.replace(/\./g, "\\.")} with SMTP id ${stored.session.messageId} for info@example\\.com; `),
    );
    expect(text).toContain("Subject: Hello from nodemailer\r\n");
    // Dot-stuffed on the wire, unstuffed in the store.
    expect(text).toContain("Line one\r\n.\r\nLine three after a lone dot\r\n");
  });

  it.skipIf(!hasSwaks)("swaks delivers a message", async () => {
    harness = await startHarness();
    const output = await new Promise<string>((resolve, reject) => {
      execFile(
        "swaks",
        ["--to", "info@example.com", "--from", "swaks@sender.test", "--server", `127.0.0.1:${harness!.port}`, "--helo", "swaks.client.test"],
        { timeout: 20_000 },
        (error, stdout, stderr) => (error ? reject(new Error(`${error.message}\n${stdout}${stderr}`)) : resolve(stdout)),
      );
    });
    expect(output).toMatch(/<-\s+250 Ok [0-9a-v]{40}/);
    expect(harness.stored).toHaveLength(1);
    expect(harness.stored[0]!.session).toMatchObject({
      mailFrom: "swaks@sender.test",
      recipients: ["info@example.com"],
      client: { helo: "swaks.client.test", tls: false },
    });
    expect(harness.stored[0]!.message.toString("latin1")).toMatch(/Subject: test /);
  });
});
