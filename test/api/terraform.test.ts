// The calls the Terraform AWS provider's SES resources make (reference §6.2), in its order and
// with its request shapes, each followed by the read Terraform does and what it reads from it.
import {
  CreateReceiptFilterCommand,
  CreateReceiptRuleCommand,
  CreateReceiptRuleSetCommand,
  DeleteIdentityCommand,
  DeleteIdentityPolicyCommand,
  DeleteReceiptFilterCommand,
  DeleteReceiptRuleCommand,
  DeleteReceiptRuleSetCommand,
  DescribeActiveReceiptRuleSetCommand,
  DescribeReceiptRuleCommand,
  DescribeReceiptRuleSetCommand,
  GetIdentityDkimAttributesCommand,
  GetIdentityMailFromDomainAttributesCommand,
  GetIdentityNotificationAttributesCommand,
  GetIdentityPoliciesCommand,
  GetIdentityVerificationAttributesCommand,
  ListReceiptFiltersCommand,
  PutIdentityPolicyCommand,
  RuleDoesNotExistException,
  RuleSetDoesNotExistException,
  SetActiveReceiptRuleSetCommand,
  SetIdentityHeadersInNotificationsEnabledCommand,
  SetIdentityMailFromDomainCommand,
  SetIdentityNotificationTopicCommand,
  SetReceiptRulePositionCommand,
  UpdateReceiptRuleCommand,
  VerifyDomainDkimCommand,
  VerifyDomainIdentityCommand,
  VerifyEmailIdentityCommand,
} from "@aws-sdk/client-ses";
import type { SESClient } from "@aws-sdk/client-ses";
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

const TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events";
const FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:triage-abuse";

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => null,
    (error: unknown) => error,
  );
}

describe("Terraform's SES resources, call by call", () => {
  it("aws_ses_receipt_rule_set and aws_ses_active_receipt_rule_set: create, read, activate, deactivate, destroy", async () => {
    await ses.send(new CreateReceiptRuleSetCommand({ RuleSetName: "tf-set" }));
    expect((await ses.send(new DescribeReceiptRuleSetCommand({ RuleSetName: "tf-set" }))).Metadata?.Name).toBe("tf-set");
    await ses.send(new SetActiveReceiptRuleSetCommand({ RuleSetName: "tf-set" }));
    expect((await ses.send(new DescribeActiveReceiptRuleSetCommand({}))).Metadata?.Name).toBe("tf-set");
    // Destroying the active-set resource: SetActiveReceiptRuleSet without a name; the read then finds no Metadata.
    await ses.send(new SetActiveReceiptRuleSetCommand({}));
    expect((await ses.send(new DescribeActiveReceiptRuleSetCommand({}))).Metadata).toBeUndefined();
    await ses.send(new DeleteReceiptRuleSetCommand({ RuleSetName: "tf-set" }));
    expect(await rejection(ses.send(new DescribeReceiptRuleSetCommand({ RuleSetName: "tf-set" })))).toBeInstanceOf(RuleSetDoesNotExistException);
  });

  it("aws_ses_receipt_rule: false flags not sent, defaults read back, actions in position order, after moved and removed, import, destroy", async () => {
    await ses.send(new CreateReceiptRuleSetCommand({ RuleSetName: "rules" }));
    // Enabled and ScanEnabled false are left out of the request (d.GetOk), as are empty Recipients and TlsPolicy.
    await ses.send(
      new CreateReceiptRuleCommand({
        RuleSetName: "rules",
        Rule: {
          Name: "first",
          Actions: [
            { S3Action: { BucketName: "mail", ObjectKeyPrefix: "in/", TopicArn: TOPIC } },
            { SNSAction: { TopicArn: TOPIC } },
            { LambdaAction: { FunctionArn: FUNCTION } },
            { StopAction: { Scope: "RuleSet" } },
          ],
        },
      }),
    );
    const read = async (name: string) => (await ses.send(new DescribeReceiptRuleCommand({ RuleSetName: "rules", RuleName: name }))).Rule!;
    const first = await read("first");
    expect(first).toMatchObject({ Name: "first", Enabled: false, ScanEnabled: false, TlsPolicy: "Optional" });
    // position = index + 1: the order is the request's, with SES's defaults filled in.
    expect(first.Actions).toEqual([
      { S3Action: { BucketName: "mail", ObjectKeyPrefix: "in/", TopicArn: TOPIC } },
      { SNSAction: { TopicArn: TOPIC, Encoding: "UTF-8" } },
      { LambdaAction: { FunctionArn: FUNCTION, InvocationType: "Event" } },
      { StopAction: { Scope: "RuleSet" } },
    ]);

    await ses.send(
      new CreateReceiptRuleCommand({
        RuleSetName: "rules",
        After: "first",
        Rule: { Name: "second", Enabled: true, ScanEnabled: true, TlsPolicy: "Require", Recipients: ["example.net"], Actions: [{ AddHeaderAction: { HeaderName: "X-Tf", HeaderValue: "1" } }] },
      }),
    );
    const order = async () => (await ses.send(new DescribeReceiptRuleSetCommand({ RuleSetName: "rules" }))).Rules?.map((rule) => rule.Name);
    expect(await order()).toEqual(["first", "second"]);
    // Update: the whole rule, then SetReceiptRulePosition because `after` changed; "" when it was removed.
    await ses.send(new UpdateReceiptRuleCommand({ RuleSetName: "rules", Rule: { Name: "second", Enabled: true, Actions: [{ StopAction: { Scope: "RuleSet" } }] } }));
    await ses.send(new SetReceiptRulePositionCommand({ RuleSetName: "rules", RuleName: "second", After: "" }));
    expect(await order()).toEqual(["second", "first"]);
    expect(await read("second")).toEqual({ Name: "second", Enabled: true, ScanEnabled: false, TlsPolicy: "Optional", Recipients: [], Actions: [{ StopAction: { Scope: "RuleSet" } }] });
    // Import id "rules:first" is read the same way.
    expect((await read("first")).Name).toBe("first");

    await ses.send(new DeleteReceiptRuleCommand({ RuleSetName: "rules", RuleName: "second" }));
    expect(await rejection(read("second"))).toBeInstanceOf(RuleDoesNotExistException);
    // Destroy after the set went out of band: the typed error tells Terraform it is gone.
    expect(await rejection(ses.send(new DeleteReceiptRuleCommand({ RuleSetName: "gone", RuleName: "first" })))).toBeInstanceOf(RuleSetDoesNotExistException);
  });

  it("aws_ses_receipt_filter: create, found by name in the list, destroy", async () => {
    await ses.send(new CreateReceiptFilterCommand({ Filter: { Name: "tf-block", IpFilter: { Cidr: "203.0.113.0/24", Policy: "Block" } } }));
    const find = async () => (await ses.send(new ListReceiptFiltersCommand({}))).Filters?.find((filter) => filter.Name === "tf-block");
    expect(await find()).toEqual({ Name: "tf-block", IpFilter: { Cidr: "203.0.113.0/24", Policy: "Block" } });
    await ses.send(new DeleteReceiptFilterCommand({ FilterName: "tf-block" }));
    expect(await find()).toBeUndefined();
  });

  it("aws_ses_domain_identity, _verification, _dkim, _mail_from and aws_ses_email_identity", async () => {
    const { VerificationToken } = await ses.send(new VerifyDomainIdentityCommand({ Domain: "tf.example" }));
    const attributes = async (identity: string) =>
      (await ses.send(new GetIdentityVerificationAttributesCommand({ Identities: [identity] }))).VerificationAttributes ?? {};
    expect((await attributes("tf.example"))["tf.example"]).toEqual({ VerificationStatus: "Success", VerificationToken });
    const { DkimTokens } = await ses.send(new VerifyDomainDkimCommand({ Domain: "tf.example" }));
    expect((await ses.send(new GetIdentityDkimAttributesCommand({ Identities: ["tf.example"] }))).DkimAttributes?.["tf.example"]?.DkimTokens).toEqual(DkimTokens);

    await ses.send(new SetIdentityMailFromDomainCommand({ Identity: "tf.example", MailFromDomain: "bounce.tf.example", BehaviorOnMXFailure: "UseDefaultValue" }));
    const mailFrom = async () => (await ses.send(new GetIdentityMailFromDomainAttributesCommand({ Identities: ["tf.example"] }))).MailFromDomainAttributes?.["tf.example"];
    expect(await mailFrom()).toMatchObject({ MailFromDomain: "bounce.tf.example", BehaviorOnMXFailure: "UseDefaultValue" });
    // Destroy: SetIdentityMailFromDomain with the identity only.
    await ses.send(new SetIdentityMailFromDomainCommand({ Identity: "tf.example" }));
    expect(await mailFrom()).toMatchObject({ MailFromDomain: "", BehaviorOnMXFailure: "UseDefaultValue" });

    await ses.send(new VerifyEmailIdentityCommand({ EmailAddress: "tf@tf.example" }));
    expect(Object.keys(await attributes("tf@tf.example"))).toEqual(["tf@tf.example"]);
    await ses.send(new DeleteIdentityCommand({ Identity: "tf@tf.example" }));
    await ses.send(new DeleteIdentityCommand({ Identity: "arn:aws:ses:us-east-1:123456789012:identity/tf.example" }));
    // The key missing from the map is how Terraform learns the identity is gone.
    expect(await attributes("tf.example")).toEqual({});
  });

  it("aws_ses_identity_notification_topic: topic and headers set, read, and unset on destroy", async () => {
    await ses.send(new VerifyDomainIdentityCommand({ Domain: "notify.example" }));
    await ses.send(new SetIdentityNotificationTopicCommand({ Identity: "notify.example", NotificationType: "Bounce", SnsTopic: TOPIC }));
    await ses.send(new SetIdentityHeadersInNotificationsEnabledCommand({ Identity: "notify.example", NotificationType: "Bounce", Enabled: true }));
    const read = async () => (await ses.send(new GetIdentityNotificationAttributesCommand({ Identities: ["notify.example"] }))).NotificationAttributes?.["notify.example"];
    expect(await read()).toMatchObject({ BounceTopic: TOPIC, HeadersInBounceNotificationsEnabled: true });
    await ses.send(new SetIdentityNotificationTopicCommand({ Identity: "notify.example", NotificationType: "Bounce" }));
    expect((await read())?.BounceTopic).toBe("");
    // Destroy after the identity went: the error text Terraform tolerates.
    await expect(ses.send(new SetIdentityNotificationTopicCommand({ Identity: "gone.example", NotificationType: "Bounce" }))).rejects.toThrow(
      "Must be a verified email address or domain",
    );
  });

  it("aws_ses_identity_policy: normalised JSON put, compared by meaning on read, destroy", async () => {
    await ses.send(new VerifyDomainIdentityCommand({ Domain: "policy.example" }));
    const policy = {
      Version: "2012-10-17",
      Statement: [{ Effect: "Allow", Principal: { AWS: ["arn:aws:iam::111122223333:root"] }, Action: ["ses:SendBounce"], Resource: "arn:aws:ses:us-east-1:123456789012:identity/policy.example" }],
    };
    await ses.send(new PutIdentityPolicyCommand({ Identity: "policy.example", PolicyName: "tf", Policy: JSON.stringify(policy, null, 2) }));
    const get = async () => (await ses.send(new GetIdentityPoliciesCommand({ Identity: "policy.example", PolicyNames: ["tf"] }))).Policies ?? {};
    expect(JSON.parse((await get()).tf!)).toEqual(policy);
    await ses.send(new DeleteIdentityPolicyCommand({ Identity: "policy.example", PolicyName: "tf" }));
    expect(await get()).toEqual({});
  });
});
