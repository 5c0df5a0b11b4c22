// IDN domains through `receiptd serve`: rules, identities and clients may each spell a domain as
// A-label or U-label, and the daemon takes its mail either way (docs/behaviour.md §2).
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import nodemailer from "nodemailer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scratch, startDaemonProcess, testConfig } from "../helpers/daemon.js";
import type { DaemonProcess } from "../helpers/daemon.js";
import { RawSmtp } from "../helpers/smtp-client.js";

// münchen.test is verified and routed as A-label, köln.test (xn--kln-sna.test) as U-label.
const MUENCHEN_A = "xn--mnchen-3ya.test";
const MUENCHEN_U = "münchen.test";
const KOELN_A = "xn--kln-sna.test";
const KOELN_U = "köln.test";

let work: { dir: string; remove(): Promise<void> };
let daemon: DaemonProcess;

beforeAll(async () => {
  work = await scratch("receiptd-idn-");
  const rules = join(work.dir, "rules.json");
  await writeFile(
    rules,
    JSON.stringify({
      Metadata: { Name: "idn" },
      Rules: [
        { Name: "a-label", Enabled: true, Recipients: [MUENCHEN_A], Actions: [{ S3Action: { BucketName: "muenchen" } }] },
        { Name: "u-label", Enabled: true, Recipients: [`info@${KOELN_U}`], Actions: [{ S3Action: { BucketName: "koeln" } }] },
      ],
    }),
  );
  await mkdir(join(work.dir, "data"), { recursive: true });
  daemon = await startDaemonProcess(testConfig(work.dir, { rules, identities: [MUENCHEN_A, KOELN_U] }), work.dir);
});
afterAll(async () => {
  await daemon?.kill("SIGKILL");
  await work?.remove();
});

/** The RCPT TO reply for `recipient`, written as UTF-8, after MAIL FROM with SMTPUTF8 or without. */
async function rcpt(recipient: string, smtpUtf8: boolean): Promise<string> {
  const client = await RawSmtp.connect(daemon.smtpPort);
  try {
    await client.reply();
    expect(await client.command("EHLO client.test")).toMatch(/^250[ -]/);
    expect(await client.command(`MAIL FROM:<carol@example.net>${smtpUtf8 ? " SMTPUTF8" : ""}`)).toBe("250 Accepted");
    client.write(Buffer.from(`RCPT TO:<${recipient}>\r\n`, "utf8"));
    return await client.reply();
  } finally {
    await client.command("QUIT").catch(() => "");
  }
}

describe("an IDN domain", () => {
  it("an A-label rule and identity take A-label mail from nodemailer, which sends U-label domains as A-labels too", async () => {
    const transport = nodemailer.createTransport({ host: "127.0.0.1", port: daemon.smtpPort, secure: false });
    for (const to of [`info@${MUENCHEN_A}`, `info@${MUENCHEN_U}`]) {
      const info = await transport.sendMail({ from: "carol@example.net", to, subject: "Grüß Gott", text: "Hallo" });
      expect(info.response, to).toMatch(/^250 Ok /);
      const messageId = /^250 Ok (\S+)/.exec(info.response)![1];
      await daemon.waitForLog((line) => line.event === "processing.message-completed" && line.messageId === messageId);
    }
  });

  it("an A-label rule and identity take U-label mail (SMTPUTF8)", async () => {
    expect(await rcpt(`info@${MUENCHEN_U}`, true)).toBe("250 Accepted");
    expect(await rcpt(`info@MÜNCHEN.test`, true)).toBe("250 Accepted");
  });

  it("a U-label rule and identity take A-label mail, with SMTPUTF8 or without, and U-label mail", async () => {
    expect(await rcpt(`info@${KOELN_A}`, false)).toBe("250 Accepted");
    expect(await rcpt(`info@${KOELN_A}`, true)).toBe("250 Accepted");
    expect(await rcpt(`info@${KOELN_U}`, true)).toBe("250 Accepted");
  });

  it("takes an A-label sender without SMTPUTF8", async () => {
    const client = await RawSmtp.connect(daemon.smtpPort);
    await client.reply();
    await client.command("EHLO client.test");
    expect(await client.command(`MAIL FROM:<carol@${KOELN_A}>`)).toBe("250 Accepted");
    expect(await client.command(`RCPT TO:<info@${MUENCHEN_A}>`)).toBe("250 Accepted");
    await client.command("QUIT");
  });

  it("keeps an A-label recipient as the client sent it, as SES reports it", async () => {
    const client = await RawSmtp.connect(daemon.smtpPort);
    await client.reply();
    await client.command("EHLO client.test");
    await client.command("MAIL FROM:<carol@example.net>");
    expect(await client.command(`RCPT TO:<info@${MUENCHEN_A}>`)).toBe("250 Accepted");
    await client.command("DATA");
    const reply = await client.command("Subject: as sent\r\n\r\nhello\r\n.");
    await client.command("QUIT");
    const messageId = /^250 Ok (\S+)/.exec(reply)![1]!;
    await daemon.waitForLog((line) => line.event === "processing.message-completed" && line.messageId === messageId);
    const stored = await readFile(join(work.dir, "data", "s3", "muenchen", messageId), "utf8");
    expect(stored).toContain(`for info@${MUENCHEN_A};`);
  });

  it("refuses a U-label domain without SMTPUTF8 (RFC 6531)", async () => {
    expect(await rcpt(`info@${MUENCHEN_U}`, false)).toBe("553 5.6.7 Non-ASCII address without SMTPUTF8");
  });

  it("still refuses what no rule or identity names, in either spelling", async () => {
    expect(await rcpt(`other@${KOELN_A}`, false)).toMatch(/^550 5\.1\.1 /);
    expect(await rcpt("info@xn--mnchen-3ya.example", false)).toBe("550 5.7.1 Relaying denied");
    expect(await rcpt(`jürg@${KOELN_A}`, false)).toBe("553 5.6.7 Non-ASCII address without SMTPUTF8");
  });
});
