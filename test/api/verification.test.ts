// state.verification "dns": identities verified by their DNS records, looked up in a real DNS
// server, and email addresses by the link they are emailed; the MX follows each status.
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import {
  CreateReceiptRuleCommand,
  CreateReceiptRuleSetCommand,
  GetIdentityDkimAttributesCommand,
  GetIdentityMailFromDomainAttributesCommand,
  GetIdentityVerificationAttributesCommand,
  SetActiveReceiptRuleSetCommand,
  SetIdentityMailFromDomainCommand,
  VerifyDomainDkimCommand,
  VerifyDomainIdentityCommand,
  VerifyEmailIdentityCommand,
} from "@aws-sdk/client-ses";
import type { SESClient } from "@aws-sdk/client-ses";
import { simpleParser } from "mailparser";
import nodemailer from "nodemailer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApiDaemon } from "../helpers/api-daemon.js";
import type { ApiDaemon } from "../helpers/api-daemon.js";
import { startDnsServer } from "../helpers/dns-server.js";
import type { TestDnsServer } from "../helpers/dns-server.js";

let dns: TestDnsServer;
let api: ApiDaemon;
let ses: SESClient;

async function rcpt(to: string): Promise<string> {
  const transport = nodemailer.createTransport({ host: "127.0.0.1", port: api.smtpPort, secure: false, ignoreTLS: true });
  try {
    return (await transport.sendMail({ from: "sender@example.org", to, subject: "t", text: "hello" })).response;
  } catch (error) {
    return String((error as { response?: string }).response ?? error);
  } finally {
    transport.close();
  }
}

async function eventually<T>(read: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  for (let i = 0; i < 100; i++) {
    const value = await read();
    if (done(value)) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error("the status never came");
}

const status = (identity: string) => async () =>
  (await ses.send(new GetIdentityVerificationAttributesCommand({ Identities: [identity] }))).VerificationAttributes?.[identity]?.VerificationStatus;

beforeAll(async () => {
  dns = await startDnsServer();
  api = await startApiDaemon({ state: { verification: "dns", verificationIntervalMs: 100, dnsServers: [dns.address] } });
  ses = api.client();
  await ses.send(new CreateReceiptRuleSetCommand({ RuleSetName: "inbound" }));
  await ses.send(new CreateReceiptRuleCommand({ RuleSetName: "inbound", Rule: { Name: "keep", Enabled: true, Actions: [{ S3Action: { BucketName: "mail" } }] } }));
  await ses.send(new SetActiveReceiptRuleSetCommand({ RuleSetName: "inbound" }));
});
afterAll(async () => {
  await api?.stop();
  await dns?.close();
});

describe("DNS verification", () => {
  it("keeps a domain Pending, and its mail refused, until its _amazonses TXT record holds the token", async () => {
    const { VerificationToken } = await ses.send(new VerifyDomainIdentityCommand({ Domain: "example.net" }));
    expect(await status("example.net")()).toBe("Pending");
    dns.zone.set("_amazonses.example.net", { txt: ["some-other-token"] });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await status("example.net")()).toBe("Pending");
    expect(await rcpt("a@example.net")).toMatch(/^550 /);
    dns.zone.set("_amazonses.example.net", { txt: ["some-other-token", VerificationToken!] });
    await eventually(status("example.net"), (s) => s === "Success");
    expect(await rcpt("a@example.net")).toMatch(/^250 /);
  });

  it("reports TemporaryFailure while DNS fails, and Success once the record answers", async () => {
    const { VerificationToken } = await ses.send(new VerifyDomainIdentityCommand({ Domain: "flaky.example" }));
    dns.zone.set("_amazonses.flaky.example", "servfail");
    await eventually(status("flaky.example"), (s) => s === "TemporaryFailure");
    dns.zone.set("_amazonses.flaky.example", { txt: [VerificationToken!] });
    await eventually(status("flaky.example"), (s) => s === "Success");
  });

  it("verifies DKIM when all three CNAMEs point at SES, and a MAIL FROM domain by its MX", async () => {
    const { DkimTokens } = await ses.send(new VerifyDomainDkimCommand({ Domain: "example.net" }));
    const dkim = async () => (await ses.send(new GetIdentityDkimAttributesCommand({ Identities: ["example.net"] }))).DkimAttributes?.["example.net"]?.DkimVerificationStatus;
    expect(await dkim()).toBe("Pending");
    for (const token of DkimTokens!.slice(0, 2)) dns.zone.set(`${token}._domainkey.example.net`, { cname: `${token}.dkim.amazonses.com` });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await dkim()).toBe("Pending");
    dns.zone.set(`${DkimTokens![2]}._domainkey.example.net`, { cname: `${DkimTokens![2]}.dkim.amazonses.com.` });
    await eventually(dkim, (s) => s === "Success");

    await ses.send(new SetIdentityMailFromDomainCommand({ Identity: "example.net", MailFromDomain: "bounce.example.net" }));
    const mailFrom = async () =>
      (await ses.send(new GetIdentityMailFromDomainAttributesCommand({ Identities: ["example.net"] }))).MailFromDomainAttributes?.["example.net"]?.MailFromDomainStatus;
    expect(await mailFrom()).toBe("Pending");
    dns.zone.set("bounce.example.net", { mx: "feedback-smtp.us-east-1.amazonses.com" });
    await eventually(mailFrom, (s) => s === "Success");
  });

  it("emails an address a confirmation link that the API serves, and the address is verified by it", async () => {
    await ses.send(new VerifyEmailIdentityCommand({ EmailAddress: "ops@mail.example" }));
    expect(await status("ops@mail.example")()).toBe("Pending");
    expect(await rcpt("ops@mail.example")).toMatch(/^550 /);
    const outbox = join(api.dataDir, "outbox");
    const [file] = await eventually(
      async () => (await readdir(outbox).catch(() => [] as string[])).filter((name) => name.endsWith(".eml")),
      (names) => names.length > 0,
    );
    const message = await simpleParser(await readFile(join(outbox, file!)));
    expect(message.to && !Array.isArray(message.to) ? message.to.text : "").toBe("ops@mail.example");
    expect(message.subject).toBe("receiptd Email Address Verification Request in region us-east-1");
    const link = /http:\/\/\S+\/confirm-email\?\S+/.exec(message.text ?? "")?.[0];
    expect(link).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/confirm-email\?account=123456789012&region=us-east-1&identity=ops%40mail\.example&token=[A-Za-z0-9_-]{43}$/);

    const forged = await fetch(link!.replace(/token=.{5}/, "token=AAAAA"));
    expect(forged.status).toBe(400);
    expect(await status("ops@mail.example")()).toBe("Pending");
    const clicked = await fetch(link!);
    expect(clicked.status).toBe(200);
    expect(await clicked.text()).toContain("You have successfully verified ops@mail.example");
    expect(await status("ops@mail.example")()).toBe("Success");
    expect(await rcpt("ops@mail.example")).toMatch(/^250 /);
    expect(await (await fetch(link!)).text()).toContain("is already verified");
  });
});
