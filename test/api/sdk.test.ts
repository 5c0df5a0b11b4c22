import {
  CloneReceiptRuleSetCommand,
  CreateReceiptFilterCommand,
  CreateReceiptRuleCommand,
  CreateReceiptRuleSetCommand,
  DeleteIdentityCommand,
  DeleteIdentityPolicyCommand,
  DeleteReceiptFilterCommand,
  DeleteReceiptRuleCommand,
  DeleteReceiptRuleSetCommand,
  DeleteVerifiedEmailAddressCommand,
  ListVerifiedEmailAddressesCommand,
  DescribeActiveReceiptRuleSetCommand,
  DescribeReceiptRuleCommand,
  DescribeReceiptRuleSetCommand,
  GetAccountSendingEnabledCommand,
  GetIdentityDkimAttributesCommand,
  GetIdentityPoliciesCommand,
  GetIdentityVerificationAttributesCommand,
  ListIdentitiesCommand,
  ListIdentityPoliciesCommand,
  ListReceiptFiltersCommand,
  ListReceiptRuleSetsCommand,
  PutIdentityPolicyCommand,
  ReorderReceiptRuleSetCommand,
  SESClient,
  SetActiveReceiptRuleSetCommand,
  SetReceiptRulePositionCommand,
  UpdateAccountSendingEnabledCommand,
  UpdateReceiptRuleCommand,
  VerifyDomainDkimCommand,
  VerifyDomainIdentityCommand,
  VerifyEmailAddressCommand,
} from "@aws-sdk/client-ses";
import nodemailer from "nodemailer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApiDaemon } from "../helpers/api-daemon.js";
import type { ApiDaemon } from "../helpers/api-daemon.js";

let api: ApiDaemon;
let ses: SESClient;

beforeAll(async () => {
  api = await startApiDaemon();
  ses = api.client();
});
afterAll(async () => api?.stop());

async function errorOf(promise: Promise<unknown>): Promise<{ name: string; message: string; status?: number; Name?: string }> {
  try {
    await promise;
  } catch (error) {
    const e = error as { name: string; message: string; $metadata?: { httpStatusCode?: number }; Name?: string };
    return { name: e.name, message: e.message, status: e.$metadata?.httpStatusCode, ...(e.Name === undefined ? {} : { Name: e.Name }) };
  }
  throw new Error("expected the call to fail");
}

async function rcpt(port: number, to: string): Promise<string> {
  const transport = nodemailer.createTransport({ host: "127.0.0.1", port, secure: false, ignoreTLS: true });
  try {
    const info = await transport.sendMail({ from: "sender@example.org", to, subject: "t", text: "hello" });
    return info.response;
  } catch (error) {
    return String((error as { response?: string }).response ?? error);
  } finally {
    transport.close();
  }
}

const rule = (name: string, recipients: string[], extra: Record<string, unknown> = {}) => ({
  Name: name,
  Enabled: true,
  Recipients: recipients,
  Actions: [{ S3Action: { BucketName: "mail", ObjectKeyPrefix: `${name}/` } }],
  ...extra,
});

describe("the SES API from @aws-sdk/client-ses", () => {
  it("starts in store mode with nothing active, empty lists and the account sending", async () => {
    const active = await ses.send(new DescribeActiveReceiptRuleSetCommand({}));
    expect(active.Metadata).toBeUndefined();
    expect(active.Rules).toBeUndefined();
    expect((await ses.send(new ListReceiptRuleSetsCommand({}))).RuleSets).toEqual([]);
    expect((await ses.send(new ListReceiptFiltersCommand({}))).Filters).toEqual([]);
    expect((await ses.send(new GetIdentityVerificationAttributesCommand({ Identities: ["nobody.example"] }))).VerificationAttributes).toEqual({});
    expect((await ses.send(new GetAccountSendingEnabledCommand({}))).Enabled).toBe(true);
    // No active rule set: every recipient is refused.
    expect(await rcpt(api.smtpPort, "a@example.net")).toMatch(/^550 5\.1\.1/);
  });

  it("drives the MX: a rule set, a verified domain and activation take effect for the next message", async () => {
    await ses.send(new CreateReceiptRuleSetCommand({ RuleSetName: "inbound" }));
    await ses.send(new CreateReceiptRuleCommand({ RuleSetName: "inbound", Rule: rule("store", ["example.net"]) }));
    const token = (await ses.send(new VerifyDomainIdentityCommand({ Domain: "Example.NET" }))).VerificationToken;
    expect(token).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    expect(await rcpt(api.smtpPort, "a@example.net")).toMatch(/^550 5\.1\.1/);
    await ses.send(new SetActiveReceiptRuleSetCommand({ RuleSetName: "inbound" }));
    expect(await rcpt(api.smtpPort, "a@example.net")).toMatch(/^250 /);
    expect(await rcpt(api.smtpPort, "a@elsewhere.example")).toMatch(/^550 5\.7\.1/);
    // Disabled: no enabled rule matches any more.
    await ses.send(new UpdateReceiptRuleCommand({ RuleSetName: "inbound", Rule: { ...rule("store", ["example.net"]), Enabled: false } }));
    expect(await rcpt(api.smtpPort, "a@example.net")).toMatch(/^550 5\.1\.1/);
    await ses.send(new UpdateReceiptRuleCommand({ RuleSetName: "inbound", Rule: rule("store", ["example.net"]) }));
    // Deactivated: all mail refused.
    await ses.send(new SetActiveReceiptRuleSetCommand({}));
    expect((await ses.send(new DescribeActiveReceiptRuleSetCommand({}))).Metadata).toBeUndefined();
    expect(await rcpt(api.smtpPort, "a@example.net")).toMatch(/^550 5\.1\.1/);
    await ses.send(new SetActiveReceiptRuleSetCommand({ RuleSetName: "inbound" }));
    const verification = await ses.send(new GetIdentityVerificationAttributesCommand({ Identities: ["example.net", "arn:aws:ses:us-east-1:123456789012:identity/example.net"] }));
    expect(verification.VerificationAttributes?.["example.net"]).toEqual({ VerificationStatus: "Success", VerificationToken: token });
  });

  it("orders rules as SES does: front without After, behind After, SetReceiptRulePosition and Reorder", async () => {
    await ses.send(new CreateReceiptRuleSetCommand({ RuleSetName: "order" }));
    await ses.send(new CreateReceiptRuleCommand({ RuleSetName: "order", Rule: rule("a", ["a.example"]) }));
    await ses.send(new CreateReceiptRuleCommand({ RuleSetName: "order", Rule: rule("b", ["b.example"]) }));
    await ses.send(new CreateReceiptRuleCommand({ RuleSetName: "order", After: "b", Rule: rule("c", ["c.example"]) }));
    const names = async () => (await ses.send(new DescribeReceiptRuleSetCommand({ RuleSetName: "order" }))).Rules?.map((r) => r.Name);
    expect(await names()).toEqual(["b", "c", "a"]);
    await ses.send(new SetReceiptRulePositionCommand({ RuleSetName: "order", RuleName: "a" }));
    expect(await names()).toEqual(["a", "b", "c"]);
    await ses.send(new SetReceiptRulePositionCommand({ RuleSetName: "order", RuleName: "a", After: "c" }));
    expect(await names()).toEqual(["b", "c", "a"]);
    await ses.send(new SetReceiptRulePositionCommand({ RuleSetName: "order", RuleName: "a", After: "a" }));
    expect(await names()).toEqual(["b", "c", "a"]);
    await ses.send(new ReorderReceiptRuleSetCommand({ RuleSetName: "order", RuleNames: ["c", "a", "b"] }));
    expect(await names()).toEqual(["c", "a", "b"]);
    expect(await errorOf(ses.send(new ReorderReceiptRuleSetCommand({ RuleSetName: "order", RuleNames: ["c", "zz", "a", "b"] })))).toMatchObject({
      name: "RuleDoesNotExistException",
    });
    expect(await errorOf(ses.send(new CreateReceiptRuleCommand({ RuleSetName: "order", After: "nope", Rule: rule("d", []) })))).toMatchObject({
      name: "RuleDoesNotExistException",
      message: "Rule does not exist: nope",
      status: 400,
    });
    // Deleting a missing rule of an existing set succeeds.
    await ses.send(new DeleteReceiptRuleCommand({ RuleSetName: "order", RuleName: "never" }));
    await ses.send(new DeleteReceiptRuleCommand({ RuleSetName: "order", RuleName: "b" }));
    expect(await names()).toEqual(["c", "a"]);
  });

  it("returns rules as stored, with the defaults SES fills in", async () => {
    await ses.send(new CreateReceiptRuleSetCommand({ RuleSetName: "defaults" }));
    await ses.send(
      new CreateReceiptRuleCommand({
        RuleSetName: "defaults",
        Rule: {
          Name: "minimal",
          Actions: [
            { SNSAction: { TopicArn: "arn:aws:sns:us-east-1:123456789012:t" } },
            { StopAction: { Scope: "RuleSet" } },
          ],
        },
      }),
    );
    const described = await ses.send(new DescribeReceiptRuleCommand({ RuleSetName: "defaults", RuleName: "minimal" }));
    expect(described.Rule).toEqual({
      Name: "minimal",
      Enabled: false,
      TlsPolicy: "Optional",
      ScanEnabled: false,
      Recipients: [],
      Actions: [{ SNSAction: { TopicArn: "arn:aws:sns:us-east-1:123456789012:t", Encoding: "UTF-8" } }, { StopAction: { Scope: "RuleSet" } }],
    });
    const set = await ses.send(new DescribeReceiptRuleSetCommand({ RuleSetName: "defaults" }));
    expect(set.Metadata?.CreatedTimestamp).toBeInstanceOf(Date);
  });

  it("answers SES's typed errors and leaves the state unchanged", async () => {
    expect(await errorOf(ses.send(new CreateReceiptRuleSetCommand({ RuleSetName: "inbound" })))).toEqual({
      name: "AlreadyExistsException",
      message: "Rule set already exists: inbound",
      status: 400,
      Name: "inbound",
    });
    expect(await errorOf(ses.send(new DescribeReceiptRuleSetCommand({ RuleSetName: "missing" })))).toMatchObject({ name: "RuleSetDoesNotExistException" });
    expect(await errorOf(ses.send(new DeleteReceiptRuleSetCommand({ RuleSetName: "inbound" })))).toMatchObject({
      name: "CannotDeleteException",
      message: "Cannot delete active rule set: inbound",
    });
    expect(await errorOf(ses.send(new CreateReceiptRuleSetCommand({ RuleSetName: "bad name" })))).toMatchObject({
      name: "ValidationError",
      message: expect.stringContaining("Member must satisfy regular expression pattern: ^[a-zA-Z0-9_.-]+$"),
    });
    expect(await errorOf(ses.send(new CreateReceiptRuleSetCommand({ RuleSetName: "_bad" })))).toMatchObject({
      name: "InvalidParameterValue",
      message: "Not a valid ruleSetName: _bad",
    });
    expect(await errorOf(ses.send(new DescribeReceiptRuleCommand({ RuleSetName: "inbound", RuleName: "nope" })))).toMatchObject({
      name: "RuleDoesNotExistException",
    });
    const badRule = { ...rule("bad", []), TlsPolicy: "Sometimes" as "Require" };
    const invalid = await errorOf(ses.send(new CreateReceiptRuleCommand({ RuleSetName: "inbound", Rule: badRule })));
    expect(invalid.name).toBe("InvalidParameterValue");
    expect(invalid.message).toContain("TlsPolicy");
    const tooMany = await errorOf(
      ses.send(new CreateReceiptRuleCommand({ RuleSetName: "inbound", Rule: { ...rule("many", []), Actions: Array.from({ length: 11 }, () => ({ StopAction: { Scope: "RuleSet" } })) } })),
    );
    expect(tooMany.name).toBe("LimitExceededException");
    const rules = (await ses.send(new DescribeReceiptRuleSetCommand({ RuleSetName: "inbound" }))).Rules?.map((r) => r.Name);
    expect(rules).toEqual(["store"]);
    // Idempotent deletes.
    await ses.send(new DeleteReceiptRuleSetCommand({ RuleSetName: "never-existed" }));
    await ses.send(new DeleteReceiptFilterCommand({ FilterName: "never-existed" }));
    await ses.send(new DeleteIdentityCommand({ Identity: "never.example" }));
  });

  it("clones, lists with pages, and filters the MX by IP", async () => {
    await ses.send(new CloneReceiptRuleSetCommand({ RuleSetName: "inbound-copy", OriginalRuleSetName: "inbound" }));
    expect((await ses.send(new DescribeReceiptRuleSetCommand({ RuleSetName: "inbound-copy" }))).Rules?.map((r) => r.Name)).toEqual(["store"]);
    const listed = (await ses.send(new ListReceiptRuleSetsCommand({}))).RuleSets?.map((s) => s.Name);
    expect(listed).toEqual(["inbound", "order", "defaults", "inbound-copy"]);

    await ses.send(new CreateReceiptFilterCommand({ Filter: { Name: "block-local", IpFilter: { Cidr: "127.0.0.0/8", Policy: "Block" } } }));
    expect((await ses.send(new ListReceiptFiltersCommand({}))).Filters).toEqual([{ Name: "block-local", IpFilter: { Cidr: "127.0.0.0/8", Policy: "Block" } }]);
    expect(await rcpt(api.smtpPort, "a@example.net")).toMatch(/554 5\.7\.1|ECONNRESET|Access denied/);
    expect(await errorOf(ses.send(new CreateReceiptFilterCommand({ Filter: { Name: "block-local", IpFilter: { Cidr: "10.0.0.0/8", Policy: "Block" } } })))).toMatchObject({
      name: "AlreadyExistsException",
    });
    await ses.send(new DeleteReceiptFilterCommand({ FilterName: "block-local" }));
    expect(await rcpt(api.smtpPort, "a@example.net")).toMatch(/^250 /);
  });

  it("identities: pages of ListIdentities, DKIM tokens, policies, and the sending pause", async () => {
    for (const name of ["a.example", "b.example", "c.example"]) await ses.send(new VerifyDomainIdentityCommand({ Domain: name }));
    await ses.send(new VerifyEmailAddressCommand({ EmailAddress: "me@example.org" }));
    const first = await ses.send(new ListIdentitiesCommand({ MaxItems: 2 }));
    expect(first.Identities).toHaveLength(2);
    expect(first.NextToken).toBeTruthy();
    const rest = await ses.send(new ListIdentitiesCommand({ MaxItems: 100, NextToken: first.NextToken }));
    expect([...first.Identities!, ...rest.Identities!]).toEqual(["example.net", "a.example", "b.example", "c.example", "me@example.org"]);
    expect((await ses.send(new ListIdentitiesCommand({ IdentityType: "EmailAddress" }))).Identities).toEqual(["me@example.org"]);
    expect((await ses.send(new ListVerifiedEmailAddressesCommand({}))).VerifiedEmailAddresses).toEqual(["me@example.org"]);
    await ses.send(new DeleteVerifiedEmailAddressCommand({ EmailAddress: "me@example.org" }));
    expect((await ses.send(new ListVerifiedEmailAddressesCommand({}))).VerifiedEmailAddresses).toEqual([]);

    const tokens = (await ses.send(new VerifyDomainDkimCommand({ Domain: "a.example" }))).DkimTokens;
    expect(tokens).toHaveLength(3);
    const dkim = await ses.send(new GetIdentityDkimAttributesCommand({ Identities: ["a.example"] }));
    expect(dkim.DkimAttributes?.["a.example"]).toEqual({ DkimEnabled: true, DkimVerificationStatus: "Success", DkimTokens: tokens });

    const policy = JSON.stringify({
      Version: "2012-10-17",
      Statement: [{ Effect: "Allow", Principal: { AWS: "111122223333" }, Action: ["ses:SendBounce"], Resource: "arn:aws:ses:us-east-1:123456789012:identity/a.example" }],
    });
    await ses.send(new PutIdentityPolicyCommand({ Identity: "a.example", PolicyName: "bounce", Policy: policy }));
    expect((await ses.send(new ListIdentityPoliciesCommand({ Identity: "a.example" }))).PolicyNames).toEqual(["bounce"]);
    expect((await ses.send(new GetIdentityPoliciesCommand({ Identity: "a.example", PolicyNames: ["bounce", "other"] }))).Policies).toEqual({ bounce: policy });
    const bad = await errorOf(
      ses.send(new PutIdentityPolicyCommand({ Identity: "a.example", PolicyName: "bad", Policy: JSON.stringify({ Statement: [{ Effect: "Maybe" }] }) })),
    );
    expect(bad).toMatchObject({ name: "InvalidPolicyException", message: expect.stringContaining("Statement[0].Effect") });
    await ses.send(new DeleteIdentityPolicyCommand({ Identity: "a.example", PolicyName: "bounce" }));
    await ses.send(new DeleteIdentityPolicyCommand({ Identity: "a.example", PolicyName: "bounce" }));
    expect((await ses.send(new ListIdentityPoliciesCommand({ Identity: "a.example" }))).PolicyNames).toEqual([]);

    await ses.send(new UpdateAccountSendingEnabledCommand({ Enabled: false }));
    expect((await ses.send(new GetAccountSendingEnabledCommand({}))).Enabled).toBe(false);
    await ses.send(new UpdateAccountSendingEnabledCommand({ Enabled: true }));

    // Deleting the domain identity: its recipients are relaying-denied again.
    await ses.send(new DeleteIdentityCommand({ Identity: "example.net" }));
    expect(await rcpt(api.smtpPort, "a@example.net")).toMatch(/^550 5\.7\.1/);
  });

  it("refuses wrong keys, bad signatures and unknown actions with SES's errors", async () => {
    expect(await errorOf(api.client({ accessKeyId: "nobody" }).send(new ListReceiptFiltersCommand({})))).toMatchObject({
      name: "InvalidClientTokenId",
      status: 403,
    });
    expect(await errorOf(api.client({ secretAccessKey: "wrong" }).send(new ListReceiptFiltersCommand({})))).toMatchObject({
      name: "SignatureDoesNotMatch",
      status: 403,
    });
    const skewed = new SESClient({ endpoint: api.endpoint, region: "us-east-1", credentials: { accessKeyId: "test", secretAccessKey: "test" }, systemClockOffset: -3600_000, maxAttempts: 1 });
    expect(await errorOf(skewed.send(new ListReceiptFiltersCommand({})))).toMatchObject({ name: "SignatureDoesNotMatch", message: expect.stringContaining("Signature expired") });
    const unsigned = await fetch(api.endpoint, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "Action=ListReceiptFilters&Version=2010-12-01" });
    expect(unsigned.status).toBe(403);
    expect(await unsigned.text()).toContain("<Code>MissingAuthenticationToken</Code>");
    const huge = await fetch(api.endpoint, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "a=".padEnd(2 * 1024 * 1024, "x") }).catch((error: unknown) => error);
    if (huge instanceof Response) expect(huge.status).toBe(413);
    // State is per region: another region of the same account is empty.
    const west = api.client({ region: "us-west-2" });
    expect((await west.send(new ListReceiptRuleSetsCommand({}))).RuleSets).toEqual([]);
  });
});
