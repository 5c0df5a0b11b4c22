import { readFile, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import nodemailer from "nodemailer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { aws, hasAwsCli, startApiDaemon } from "../helpers/api-daemon.js";
import type { ApiDaemon } from "../helpers/api-daemon.js";

// Debian's awscli is installed by .ci/run; a developer's machine may lack it.
const CLI_REQUIRED = process.env.CI === "true";
const run = hasAwsCli || CLI_REQUIRED ? describe : describe.skip;

let api: ApiDaemon;
beforeAll(async () => {
  if (!hasAwsCli && !CLI_REQUIRED) return;
  api = await startApiDaemon();
});
afterAll(async () => api?.stop());

async function cli(args: string[]): Promise<unknown> {
  const result = await aws(api.endpoint, args, api.dir);
  if (result.code !== 0) throw new Error(`aws ses ${args.join(" ")}: ${result.stderr}`);
  return result.stdout.trim() === "" ? {} : JSON.parse(result.stdout);
}

async function cliError(args: string[]): Promise<string> {
  const result = await aws(api.endpoint, args, api.dir);
  expect(result.code).not.toBe(0);
  return result.stderr;
}

async function deliver(to: string): Promise<string> {
  const transport = nodemailer.createTransport({ host: "127.0.0.1", port: api.smtpPort, secure: false, ignoreTLS: true });
  try {
    const info = await transport.sendMail({ from: "alice@example.org", to, subject: "hello", text: "hello" });
    return /250 Ok (\S+)/.exec(info.response)?.[1] ?? "";
  } finally {
    transport.close();
  }
}

async function waitForFile(dir: string, name: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await readdir(dir).catch((): string[] => [])).includes(name)) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${name} never appeared in ${dir}`);
}

// Each CLI call is a Python start-up, about a second.
const CLI_TIMEOUT_MS = 120_000;

run("the AWS CLI against receiptd serve", () => {
  it("creates a rule set from --rule file://, activates it, verifies a domain, and the MX follows each change", async () => {
    await cli(["create-receipt-rule-set", "--rule-set-name", "inbound"]);
    const rule = { Name: "store", Enabled: true, Recipients: ["example.net"], Actions: [{ S3Action: { BucketName: "mail", ObjectKeyPrefix: "v1/" } }] };
    await writeFile(join(api.dir, "rule.json"), JSON.stringify(rule));
    await cli(["create-receipt-rule", "--rule-set-name", "inbound", "--rule", "file://rule.json"]);
    expect(await cli(["verify-domain-identity", "--domain", "example.net"])).toMatchObject({ VerificationToken: expect.any(String) });
    await cli(["set-active-receipt-rule-set", "--rule-set-name", "inbound"]);

    const first = await deliver("someone@example.net");
    await waitForFile(join(api.dataDir, "s3", "mail", "v1"), first);

    await writeFile(join(api.dir, "rule.json"), JSON.stringify({ ...rule, Actions: [{ S3Action: { BucketName: "mail", ObjectKeyPrefix: "v2/" } }] }));
    await cli(["update-receipt-rule", "--rule-set-name", "inbound", "--rule", "file://rule.json"]);
    const second = await deliver("someone@example.net");
    await waitForFile(join(api.dataDir, "s3", "mail", "v2"), second);

    const active = (await cli(["describe-active-receipt-rule-set"])) as { Metadata: { Name: string }; Rules: { Actions: unknown[] }[] };
    expect(active.Metadata.Name).toBe("inbound");
    expect(active.Rules[0]!.Actions).toEqual([{ S3Action: { BucketName: "mail", ObjectKeyPrefix: "v2/" } }]);

    const bounced = (await cli([
      "send-bounce",
      "--original-message-id",
      second,
      "--bounce-sender",
      "bounces@example.net",
      "--bounced-recipient-info-list",
      "Recipient=someone@example.net,BounceType=DoesNotExist",
    ])) as { MessageId: string };
    const outbox = await readdir(join(api.dataDir, "outbox"));
    expect(outbox).toHaveLength(1);
    expect(await readFile(join(api.dataDir, "outbox", outbox[0]!), "latin1")).toContain(`Message-ID: <${bounced.MessageId}@`);
  }, CLI_TIMEOUT_MS);

  it("answers the rule set, rule and filter commands", async () => {
    await cli(["clone-receipt-rule-set", "--rule-set-name", "copy", "--original-rule-set-name", "inbound"]);
    await writeFile(join(api.dir, "second.json"), JSON.stringify({ Name: "second", Enabled: true, Recipients: ["example.net"], Actions: [{ AddHeaderAction: { HeaderName: "X-Seen", HeaderValue: "1" } }] }));
    await cli(["create-receipt-rule", "--rule-set-name", "copy", "--after", "store", "--rule", "file://second.json"]);
    await cli(["set-receipt-rule-position", "--rule-set-name", "copy", "--rule-name", "second"]);
    expect(((await cli(["describe-receipt-rule-set", "--rule-set-name", "copy"])) as { Rules: { Name: string }[] }).Rules.map((r) => r.Name)).toEqual(["second", "store"]);
    await cli(["reorder-receipt-rule-set", "--rule-set-name", "copy", "--rule-names", "store", "second"]);
    expect(await cli(["describe-receipt-rule", "--rule-set-name", "copy", "--rule-name", "second"])).toMatchObject({ Rule: { Name: "second", TlsPolicy: "Optional" } });
    await cli(["delete-receipt-rule", "--rule-set-name", "copy", "--rule-name", "second"]);
    expect(((await cli(["list-receipt-rule-sets"])) as { RuleSets: { Name: string }[] }).RuleSets.map((s) => s.Name)).toEqual(["inbound", "copy"]);
    expect(await cliError(["delete-receipt-rule-set", "--rule-set-name", "inbound"])).toContain("(CannotDelete)");
    await cli(["delete-receipt-rule-set", "--rule-set-name", "copy"]);
    expect(await cliError(["describe-receipt-rule-set", "--rule-set-name", "copy"])).toContain("(RuleSetDoesNotExist)");

    await cli(["create-receipt-filter", "--filter", "Name=corp,IpFilter={Cidr=10.0.0.0/8,Policy=Block}"]);
    expect(await cli(["list-receipt-filters"])).toEqual({ Filters: [{ Name: "corp", IpFilter: { Cidr: "10.0.0.0/8", Policy: "Block" } }] });
    await cli(["delete-receipt-filter", "--filter-name", "corp"]);
    expect(await cli(["list-receipt-filters"])).toEqual({ Filters: [] });
  }, CLI_TIMEOUT_MS);

  it("answers the identity, policy and account commands", async () => {
    await cli(["verify-email-identity", "--email-address", "ops@example.org"]);
    // Debian's AWS CLI v2 no longer has the legacy verify-email-address, list-verified-email-addresses
    // and delete-verified-email-address commands; test/api/sdk.test.ts calls those operations.
    await cli(["verify-email-identity", "--email-address", "old@example.org"]);
    expect(((await cli(["verify-domain-dkim", "--domain", "example.net"])) as { DkimTokens: string[] }).DkimTokens).toHaveLength(3);
    expect(await cli(["list-identities", "--identity-type", "EmailAddress"])).toEqual({ Identities: ["ops@example.org", "old@example.org"] });
    expect(await cli(["get-identity-verification-attributes", "--identities", "ops@example.org"])).toEqual({
      VerificationAttributes: { "ops@example.org": { VerificationStatus: "Success" } },
    });
    expect(await cli(["get-identity-dkim-attributes", "--identities", "example.net"])).toMatchObject({ DkimAttributes: { "example.net": { DkimEnabled: true } } });
    await cli(["set-identity-dkim-enabled", "--identity", "example.net", "--no-dkim-enabled"]);
    await cli(["set-identity-mail-from-domain", "--identity", "example.net", "--mail-from-domain", "bounce.example.net", "--behavior-on-mx-failure", "RejectMessage"]);
    expect(await cli(["get-identity-mail-from-domain-attributes", "--identities", "example.net"])).toEqual({
      MailFromDomainAttributes: { "example.net": { MailFromDomain: "bounce.example.net", MailFromDomainStatus: "Success", BehaviorOnMXFailure: "RejectMessage" } },
    });
    await cli(["set-identity-notification-topic", "--identity", "example.net", "--notification-type", "Bounce", "--sns-topic", "arn:aws:sns:us-east-1:123456789012:bounces"]);
    await cli(["set-identity-notification-topic", "--identity", "example.net", "--notification-type", "Complaint", "--sns-topic", "arn:aws:sns:us-east-1:123456789012:complaints"]);
    await cli(["set-identity-feedback-forwarding-enabled", "--identity", "example.net", "--no-forwarding-enabled"]);
    await cli(["set-identity-headers-in-notifications-enabled", "--identity", "example.net", "--notification-type", "Bounce", "--enabled"]);
    expect(await cli(["get-identity-notification-attributes", "--identities", "example.net"])).toMatchObject({
      NotificationAttributes: {
        "example.net": { BounceTopic: "arn:aws:sns:us-east-1:123456789012:bounces", ForwardingEnabled: false, HeadersInBounceNotificationsEnabled: true },
      },
    });
    await writeFile(
      join(api.dir, "policy.json"),
      JSON.stringify({ Version: "2012-10-17", Statement: [{ Effect: "Allow", Principal: { AWS: ["111122223333"] }, Action: "ses:SendBounce", Resource: "arn:aws:ses:us-east-1:123456789012:identity/example.net" }] }),
    );
    await cli(["put-identity-policy", "--identity", "example.net", "--policy-name", "bounces", "--policy", "file://policy.json"]);
    expect(await cli(["list-identity-policies", "--identity", "example.net"])).toEqual({ PolicyNames: ["bounces"] });
    expect(Object.keys(((await cli(["get-identity-policies", "--identity", "example.net", "--policy-names", "bounces"])) as { Policies: object }).Policies)).toEqual(["bounces"]);
    await cli(["delete-identity-policy", "--identity", "example.net", "--policy-name", "bounces"]);
    await cli(["update-account-sending-enabled", "--no-enabled"]);
    expect(await cli(["get-account-sending-enabled"])).toEqual({ Enabled: false });
    await cli(["update-account-sending-enabled", "--enabled"]);
    await cli(["delete-identity", "--identity", "old@example.org"]);
    await cli(["delete-identity", "--identity", "ops@example.org"]);
    expect(await cli(["list-identities"])).toEqual({ Identities: ["example.net"] });
  }, CLI_TIMEOUT_MS);
});
