import { execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import {
  RuleSetValidationError,
  parseFilters,
  parseFiltersText,
  parseRuleSet,
  parseRuleSetText,
} from "../../src/rules/parse.js";
import type { Parsed, ValidationIssue } from "../../src/rules/parse.js";
import { loadFiltersFile, loadRuleSetFile } from "../../src/config/rule-files.js";
import type { RuleSet } from "../../src/rules/model.js";

const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/rules/${name}`, import.meta.url));

const TOPIC = "arn:aws:sns:us-east-1:123456789012:mail";
const FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:triage";
const ORGANIZATION = "arn:aws:workmail:us-west-2:123456789012:organization/m-68755160c4cb4e29a2b2f8fb58f359d7";
const ACTION_KEYS =
  "S3Action, SNSAction, LambdaAction, BounceAction, AddHeaderAction, StopAction, WorkmailAction, ConnectAction";
const CONNECT_INSTANCE = "arn:aws:connect:us-east-1:123456789012:instance/a1b2c3d4-5678-90ab-cdef-EXAMPLE11111";
const CONNECT_ROLE = "arn:aws:iam::123456789012:role/ses-start-email-contact";
const NAME_RULE = "a name of 1 to 63 ASCII letters, digits, '.', '_' or '-' that starts and ends with a letter or digit";
const RECIPIENT_RULE =
  "expected an address (user@example.com), a domain (example.com) or a dot-prefixed domain (.example.com)";

function issuesOf<T>(result: Parsed<T>): ValidationIssue[] {
  if (result.ok) throw new Error(`expected validation issues, got ${JSON.stringify(result.value)}`);
  return result.issues;
}

const setIssues = (doc: unknown): ValidationIssue[] => issuesOf(parseRuleSet(doc));
const filterIssues = (doc: unknown): ValidationIssue[] => issuesOf(parseFilters(doc));
const withRules = (...rules: unknown[]): unknown => ({ Metadata: { Name: "set" }, Rules: rules });
const ruleIssues = (rule: Record<string, unknown>): ValidationIssue[] => setIssues(withRules({ Name: "r", ...rule }));
const actionIssues = (action: unknown): ValidationIssue[] => ruleIssues({ Actions: [action] });
const withFilters = (...filters: unknown[]): unknown => ({ Filters: filters });
const filter = (Name: string, Policy: string, Cidr: string) => ({ Name, IpFilter: { Policy, Cidr } });

/** Exactly one issue, at `path`, whose message contains every fragment. */
function expectOneIssue(found: ValidationIssue[], path: string, ...fragments: string[]): void {
  expect(found).toHaveLength(1);
  expect(found[0]?.path).toBe(path);
  for (const fragment of fragments) expect(found[0]?.message).toContain(fragment);
}

describe("a valid rule set", () => {
  it("loads every action type into the model, parameters as written", async () => {
    const expected: RuleSet = {
      name: "inbound-main",
      createdTimestamp: "2024-03-01T12:34:56.789000+00:00",
      rules: [
        {
          name: "store-and-notify",
          enabled: true,
          tlsPolicy: "Require",
          recipients: ["Support@Example.com", "example.net", ".example.org"],
          scanEnabled: true,
          actions: [
            { type: "AddHeader", params: { HeaderName: "X-Receiptd-Rule", HeaderValue: "store-and-notify" } },
            {
              type: "S3",
              params: {
                BucketName: "inbound-mail.example",
                ObjectKeyPrefix: "incoming/",
                KmsKeyArn: "arn:aws:kms:us-east-1:123456789012:alias/aws/ses",
                IamRoleArn: "arn:aws:iam::123456789012:role/service-role/ses-to-s3",
                TopicArn: "arn:aws:sns:us-east-1:123456789012:mail-stored",
              },
            },
            {
              type: "SNS",
              params: { TopicArn: "arn:aws:sns:us-east-1:123456789012:mail-content", Encoding: "Base64" },
            },
            {
              type: "Lambda",
              params: {
                FunctionArn: "arn:aws:lambda:us-east-1:123456789012:function:triage:live",
                InvocationType: "RequestResponse",
                TopicArn: "arn:aws:sns:us-east-1:123456789012:triaged",
              },
            },
            {
              type: "WorkMail",
              params: {
                OrganizationArn:
                  "arn:aws:workmail:us-east-1:123456789012:organization/m-68755160c4cb4e29a2b2f8fb58f359d7",
              },
            },
          ],
        },
        {
          name: "reject-noreply",
          enabled: true,
          tlsPolicy: "Optional",
          recipients: ["noreply@example.com"],
          scanEnabled: false,
          actions: [
            {
              type: "Bounce",
              params: {
                SmtpReplyCode: "550",
                StatusCode: "5.1.1",
                Message: "Mailbox does not exist",
                Sender: "mailer-daemon@example.com",
                TopicArn: "arn:aws-us-gov:sns:us-gov-west-1:123456789012:bounced",
              },
            },
            { type: "Stop", params: { Scope: "RuleSet" } },
          ],
        },
        {
          name: "catch-all",
          enabled: false,
          tlsPolicy: "Optional",
          recipients: [],
          scanEnabled: false,
          actions: [{ type: "S3", params: { BucketName: "catch-all-mail" } }],
        },
      ],
    };
    expect(await loadRuleSetFile(fixture("every-action.json"))).toEqual(expected);
  });

  it("applies the SES defaults: disabled, TLS optional, no scan, no recipients, no actions", () => {
    expect(parseRuleSet(withRules({ Name: "bare" }))).toEqual({
      ok: true,
      value: {
        name: "set",
        rules: [
          { name: "bare", enabled: false, tlsPolicy: "Optional", recipients: [], scanEnabled: false, actions: [] },
        ],
      },
    });
  });

  it("names a rule set without Metadata.Name 'default' and treats {} as an empty set", () => {
    expect(parseRuleSet({})).toEqual({ ok: true, value: { name: "default", rules: [] } });
    expect(parseRuleSet({ Metadata: {}, Rules: [] })).toEqual({ ok: true, value: { name: "default", rules: [] } });
    expect(parseRuleSet({ Metadata: { Name: "named" } })).toEqual({ ok: true, value: { name: "named", rules: [] } });
  });

  it("copies action parameters, so later edits of the document do not reach the model", () => {
    const params = { BucketName: "bucket" };
    const parsed = parseRuleSet(withRules({ Name: "r", Actions: [{ S3Action: params }] }));
    params.BucketName = "changed";
    expect(parsed.ok && parsed.value.rules[0]?.actions[0]?.params).toEqual({ BucketName: "bucket" });
  });

  it("validates a 200-rule set (its speed is measured by npm run bench:replay)", () => {
    const rules = Array.from({ length: 200 }, (_, i) => ({
      Name: `rule-${i}`,
      Enabled: true,
      Recipients: Array.from({ length: 5 }, (_, j) => `user${j}@d${i}.example.com`),
      Actions: [
        { AddHeaderAction: { HeaderName: "X-Rule", HeaderValue: `rule-${i}` } },
        { S3Action: { BucketName: "bucket", ObjectKeyPrefix: `r${i}/`, TopicArn: TOPIC } },
        { LambdaAction: { FunctionArn: FUNCTION } },
      ],
    }));
    const doc = withRules(...rules);
    const parsed = parseRuleSet(doc);
    expect(parsed.ok && parsed.value.rules.length).toBe(200);
  });
});

describe("document shape", () => {
  it.each([
    ["an array", [], "found an array"],
    ["a string", "rules", 'found a string ("rules")'],
    ["null", null, "found null"],
  ])("rejects %s at the root", (_, doc, found) => {
    expectOneIssue(setIssues(doc), "", "expected an object (the output of aws ses describe-active-receipt-rule-set", found);
  });

  it("rejects unknown keys at the top level and in Metadata, naming the allowed keys", () => {
    expect(setIssues({ Metadata: { Name: "s", Created: "x" }, Rules: [], ResponseMetadata: {} })).toEqual([
      {
        path: "Metadata.Created",
        message: 'unknown key "Created" in ReceiptRuleSetMetadata; allowed keys: Name, CreatedTimestamp',
      },
      {
        path: "ResponseMetadata",
        message:
          'unknown key "ResponseMetadata" in the output of aws ses describe-active-receipt-rule-set or ' +
          "describe-receipt-rule-set; allowed keys: Metadata, Rules",
      },
    ]);
  });

  it("quotes a key that is not an identifier in the path", () => {
    expectOneIssue(ruleIssues({ "Scan Enabled": true }), 'Rules[0]["Scan Enabled"]', 'unknown key "Scan Enabled"');
  });

  it("checks Metadata.CreatedTimestamp is a date", () => {
    const path = "Metadata.CreatedTimestamp";
    expectOneIssue(setIssues({ Metadata: { CreatedTimestamp: "yesterday" } }), path, "ISO 8601");
    expectOneIssue(setIssues({ Metadata: { CreatedTimestamp: 1709296496 } }), path, "found a number (1709296496)");
  });

  it("requires Rules to be an array of objects", () => {
    expectOneIssue(setIssues({ Rules: {} }), "Rules", "expected an array of rules, found an object");
    expectOneIssue(setIssues({ Rules: ["r"] }), "Rules[0]", 'expected an object (ReceiptRule), found a string ("r")');
  });
});

describe("rules", () => {
  it("rejects an unknown key such as Enable, listing the allowed keys", () => {
    expect(ruleIssues({ Enable: true })).toEqual([
      {
        path: "Rules[0].Enable",
        message:
          'unknown key "Enable" in ReceiptRule; allowed keys: Name, Enabled, TlsPolicy, Recipients, Actions, ScanEnabled',
      },
    ]);
  });

  it("requires Name", () => {
    expectOneIssue(setIssues(withRules({ Enabled: true })), "Rules[0].Name", "missing required key Name in ReceiptRule");
  });

  it.each([
    ["Enabled", "true", 'expected a boolean (true or false), found a string ("true")'],
    ["ScanEnabled", 1, "expected a boolean (true or false), found a number (1)"],
    ["TlsPolicy", "require", 'expected one of "Require", "Optional", found "require"'],
    ["TlsPolicy", null, "expected a string, found null"],
    ["Recipients", "a@example.com", 'expected an array of recipients, found a string ("a@example.com")'],
    ["Actions", {}, "expected an array of actions, found an object"],
  ])("checks %s: %j", (key, value, message) => {
    expect(ruleIssues({ [key]: value })).toEqual([{ path: `Rules[0].${key}`, message }]);
  });

  it("treats a key set to undefined as absent, as JSON.stringify does", () => {
    const parsed = parseRuleSet(withRules({ Name: "r", Enabled: undefined, Recipients: undefined }));
    expect(parsed.ok && parsed.value.rules[0]).toMatchObject({ enabled: false, recipients: [] });
    expectOneIssue(ruleIssues({ Name: undefined }), "Rules[0].Name", "missing required key Name");
    expectOneIssue(actionIssues({ S3Action: undefined }), "Rules[0].Actions[0].S3Action", "found undefined");
  });

  it("keeps Enabled: false and TlsPolicy: Optional as written", () => {
    const parsed = parseRuleSet(withRules({ Name: "r", Enabled: false, TlsPolicy: "Optional", ScanEnabled: false }));
    expect(parsed.ok && parsed.value.rules[0]).toMatchObject({
      enabled: false,
      tlsPolicy: "Optional",
      scanEnabled: false,
    });
  });

  it("rejects two rules with the same name", () => {
    expectOneIssue(
      setIssues(withRules({ Name: "same" }, { Name: "other" }, { Name: "same" })),
      "Rules[2].Name",
      'expected a unique Name, found "same" again (first at Rules[0].Name)',
    );
  });

  it("compares rule names exactly, so names differing in case are distinct", () => {
    expect(parseRuleSet(withRules({ Name: "Same" }, { Name: "same" })).ok).toBe(true);
  });

  it("accepts 200 rules and rejects 201", () => {
    const rules = (n: number) => Array.from({ length: n }, (_, i) => ({ Name: `r${i}` }));
    expect(parseRuleSet(withRules(...rules(200))).ok).toBe(true);
    expectOneIssue(setIssues(withRules(...rules(201))), "Rules", "expected at most 200 rules, found 201");
  });

  it("accepts 10 actions per rule and rejects 11", () => {
    const actions = (n: number) => Array.from({ length: n }, () => ({ StopAction: { Scope: "RuleSet" } }));
    expect(parseRuleSet(withRules({ Name: "r", Actions: actions(10) })).ok).toBe(true);
    expectOneIssue(ruleIssues({ Actions: actions(11) }), "Rules[0].Actions", "expected at most 10 actions, found 11");
  });

  it("accepts 100 recipients per rule and rejects 101", () => {
    const recipients = (n: number) => Array.from({ length: n }, (_, i) => `user${i}@example.com`);
    expect(parseRuleSet(withRules({ Name: "r", Recipients: recipients(100) })).ok).toBe(true);
    expectOneIssue(
      ruleIssues({ Recipients: recipients(101) }),
      "Rules[0].Recipients",
      "expected at most 100 recipients, found 101",
    );
  });
});

describe("names of rule sets, rules and filters", () => {
  it.each(["a", "7", "rule_1.v2-final", "A".repeat(63), "a-._b"])("accepts %j", (name) => {
    expect(parseRuleSet({ Metadata: { Name: name }, Rules: [{ Name: name }] }).ok).toBe(true);
    expect(parseFilters(withFilters(filter(name, "Allow", "10.0.0.1"))).ok).toBe(true);
  });

  it.each(["", "-rule", "rule-", "_rule", "rule.", "a".repeat(64), "rule@home", "règle", "two words"])(
    "rejects %j",
    (name) => {
      expect(setIssues({ Metadata: { Name: name }, Rules: [{ Name: name }] })).toEqual([
        { path: "Metadata.Name", message: expect.stringContaining(NAME_RULE) },
        { path: "Rules[0].Name", message: expect.stringContaining(NAME_RULE) },
      ]);
      expectOneIssue(filterIssues(withFilters(filter(name, "Allow", "10.0.0.1"))), "Filters[0].Name", NAME_RULE);
    },
  );
});

describe("recipients", () => {
  it.each([
    "user@example.com",
    "User+Label@Example.COM",
    "first.last@mail.example.co.uk",
    "o'brien@example.com",
    "example.com",
    ".example.com",
    "EXAMPLE.com",
    "bücher.example",
    "xn--bcher-kva.example",
    "用户@例子.测试",
    "a-b.example",
  ])("accepts %j and keeps it as written", (recipient) => {
    const parsed = parseRuleSet(withRules({ Name: "r", Recipients: [recipient] }));
    expect(parsed.ok && parsed.value.rules[0]?.recipients).toEqual([recipient]);
  });

  it("allows the same recipient twice, as SES does", () => {
    const parsed = parseRuleSet(withRules({ Name: "r", Recipients: ["a@example.com", "a@example.com"] }));
    expect(parsed.ok && parsed.value.rules[0]?.recipients).toEqual(["a@example.com", "a@example.com"]);
  });

  it.each([
    "user",
    "localhost",
    "@example.com",
    "user@",
    "user@@example.com",
    "user name@example.com",
    ".user@example.com",
    "us..er@example.com",
    "user@.example.com",
    "exa mple.com",
    "-example.com",
    "example-.com",
    "example..com",
    "..example.com",
    "example.com.",
    "ex_ample.com",
    "ex%41mple.com",
    "example.com/path",
    "192.0.2.1",
    "xn--zz.example",
    `${"a".repeat(64)}.example.com`,
    `${"a".repeat(65)}@example.com`,
    "",
  ])("rejects %j", (recipient) => {
    expectOneIssue(
      ruleIssues({ Recipients: ["ok@example.com", recipient] }),
      "Rules[0].Recipients[1]",
      RECIPIENT_RULE,
      `found ${JSON.stringify(recipient).slice(0, 40)}`,
    );
  });

  it("rejects a recipient that is not a string", () => {
    expectOneIssue(ruleIssues({ Recipients: [42] }), "Rules[0].Recipients[0]", "expected a string, found a number (42)");
  });
});

describe("actions", () => {
  it("accepts a real SES rule set with a ConnectAction, its fields as written", () => {
    // As `aws ses describe-active-receipt-rule-set` prints a set that hands mail to Amazon Connect.
    const described = {
      Metadata: { Name: "contact-center", CreatedTimestamp: "2025-01-14T10:20:30.123000+00:00" },
      Rules: [
        {
          Name: "to-connect",
          Enabled: true,
          TlsPolicy: "Optional",
          Recipients: ["support@example.com"],
          Actions: [
            { S3Action: { BucketName: "contact-archive", ObjectKeyPrefix: "support/" } },
            { ConnectAction: { InstanceARN: CONNECT_INSTANCE, IAMRoleARN: CONNECT_ROLE } },
          ],
          ScanEnabled: true,
        },
      ],
    };
    const parsed = parseRuleSet(described);
    if (!parsed.ok) throw new Error(JSON.stringify(parsed.issues));
    expect(parsed.value.rules[0]?.actions[1]).toEqual({
      type: "Connect",
      params: { InstanceARN: CONNECT_INSTANCE, IAMRoleARN: CONNECT_ROLE },
    });
  });

  it("refuses a ConnectAction without its required fields, naming each", () => {
    expect(actionIssues({ ConnectAction: {} })).toEqual([
      { path: "Rules[0].Actions[0].ConnectAction.InstanceARN", message: "missing required key InstanceARN in ConnectAction" },
      { path: "Rules[0].Actions[0].ConnectAction.IAMRoleARN", message: "missing required key IAMRoleARN in ConnectAction" },
    ]);
  });

  it("refuses a ConnectAction with fields that are not ARNs of their kind, naming each", () => {
    const issues = actionIssues({
      ConnectAction: { InstanceARN: "arn:aws:connect:us-east-1:123456789012:queue/q", IAMRoleARN: "ses-role" },
    });
    expect(issues.map((issue) => issue.path)).toEqual([
      "Rules[0].Actions[0].ConnectAction.InstanceARN",
      "Rules[0].Actions[0].ConnectAction.IAMRoleARN",
    ]);
    expect(issues[0]?.message).toContain("expected an ARN like arn:aws:connect:us-east-1:123456789012:instance/");
    expect(issues[1]?.message).toContain("expected an ARN like arn:aws:iam::123456789012:role/");
    expectOneIssue(
      actionIssues({ ConnectAction: { InstanceARN: CONNECT_INSTANCE, IAMRoleARN: CONNECT_ROLE, TopicArn: TOPIC } }),
      "Rules[0].Actions[0].ConnectAction.TopicArn",
      'unknown key "TopicArn" in ConnectAction; allowed keys: InstanceARN, IAMRoleARN',
    );
  });

  it("requires exactly one action key per element", () => {
    expectOneIssue(actionIssues({}), "Rules[0].Actions[0]", `expected exactly one action key (${ACTION_KEYS}), found none`);
    expectOneIssue(
      actionIssues({ StopAction: { Scope: "RuleSet" }, SNSAction: { TopicArn: TOPIC } }),
      "Rules[0].Actions[0]",
      "found 2: StopAction, SNSAction",
    );
  });

  it("still checks each action of an element with two", () => {
    expect(actionIssues({ StopAction: {}, SNSAction: {} }).map((issue) => issue.path)).toEqual([
      "Rules[0].Actions[0]",
      "Rules[0].Actions[0].StopAction.Scope",
      "Rules[0].Actions[0].SNSAction.TopicArn",
    ]);
  });

  it("rejects an unknown action key, listing the action keys", () => {
    expectOneIssue(
      actionIssues({ S3Actions: { BucketName: "bucket" } }),
      "Rules[0].Actions[0].S3Actions",
      `unknown key "S3Actions" in ReceiptAction; allowed keys: ${ACTION_KEYS}`,
    );
  });

  it("rejects an unknown key inside an action", () => {
    expectOneIssue(
      actionIssues({ S3Action: { BucketName: "bucket", Prefix: "in/" } }),
      "Rules[0].Actions[0].S3Action.Prefix",
      'unknown key "Prefix" in S3Action; allowed keys: BucketName, ObjectKeyPrefix, KmsKeyArn, IamRoleArn, TopicArn',
    );
  });

  it("rejects an action that is not an object", () => {
    expectOneIssue(actionIssues("S3Action"), "Rules[0].Actions[0]", `expected an object with one of ${ACTION_KEYS}`);
    expectOneIssue(
      actionIssues({ S3Action: "bucket" }),
      "Rules[0].Actions[0].S3Action",
      'expected an object (S3Action), found a string ("bucket")',
    );
  });

  const s3 = { BucketName: "my-bucket" };
  const bounce = { SmtpReplyCode: "550", Message: "Gone", Sender: "postmaster@example.com" };
  const header = { HeaderName: "X-Tag", HeaderValue: "v" };

  it.each([
    { S3Action: { BucketName: "abc" } },
    { S3Action: { BucketName: "a".repeat(63) } },
    { S3Action: { BucketName: "mail.example-1" } },
    { S3Action: { ...s3, ObjectKeyPrefix: "" } },
    { S3Action: { ...s3, ObjectKeyPrefix: "p".repeat(984) } },
    { S3Action: { ...s3, ObjectKeyPrefix: "é".repeat(492) } },
    { S3Action: { ...s3, KmsKeyArn: "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab" } },
    { S3Action: { ...s3, KmsKeyArn: "arn:aws-cn:kms:cn-north-1:123456789012:key/mrk-1234abcd12ab34cd56ef12345678" } },
    { S3Action: { ...s3, IamRoleArn: "arn:aws:iam::123456789012:role/ses-writer" } },
    { S3Action: { ...s3, TopicArn: "arn:aws-cn:sns:cn-north-1:123456789012:cn_topic" } },
    { SNSAction: { TopicArn: TOPIC, Encoding: "UTF-8" } },
    { BounceAction: { ...bounce, SmtpReplyCode: "421", StatusCode: "4.2.2" } },
    { BounceAction: { ...bounce, StatusCode: "5.123.999", TopicArn: TOPIC } },
    { LambdaAction: { FunctionArn: FUNCTION, InvocationType: "Event" } },
    { LambdaAction: { FunctionArn: `${FUNCTION}:$LATEST` } },
    { LambdaAction: { FunctionArn: `${FUNCTION}:7` } },
    { StopAction: { Scope: "RuleSet", TopicArn: TOPIC } },
    { AddHeaderAction: { HeaderName: "A".repeat(50), HeaderValue: "v".repeat(2047) } },
    { AddHeaderAction: { HeaderName: "X-1", HeaderValue: "" } },
    { WorkmailAction: { OrganizationArn: ORGANIZATION, TopicArn: TOPIC } },
  ])("accepts %j", (action) => {
    expect(parseRuleSet(withRules({ Name: "r", Actions: [action] })).ok).toBe(true);
  });

  // Each case breaks one constraint: the action key, its parameters, the field reported, and what the message says.
  const invalidActions: [key: string, params: Record<string, unknown>, field: string, ...fragments: string[]][] = [
    ["S3Action", {}, "BucketName", "missing required key BucketName in S3Action"],
    ["S3Action", { BucketName: 42 }, "BucketName", "expected a string, found a number (42)"],
    ["S3Action", { BucketName: "ab" }, "BucketName", "an S3 bucket name of 3 to 63"],
    ["S3Action", { BucketName: "a".repeat(64) }, "BucketName", "an S3 bucket name of 3 to 63"],
    ["S3Action", { BucketName: "My-Bucket" }, "BucketName", "an S3 bucket name of 3 to 63"],
    ["S3Action", { BucketName: "-bucket" }, "BucketName", "an S3 bucket name of 3 to 63"],
    ["S3Action", { BucketName: "bucket." }, "BucketName", "an S3 bucket name of 3 to 63"],
    ["S3Action", { BucketName: "my_bucket" }, "BucketName", "an S3 bucket name of 3 to 63"],
    ["S3Action", { BucketName: "my..bucket" }, "BucketName", "without two adjacent periods"],
    ["S3Action", { BucketName: "192.168.5.4" }, "BucketName", "not formatted as an IP address"],
    ["S3Action", { ...s3, ObjectKeyPrefix: "p".repeat(985) }, "ObjectKeyPrefix", "at most 984 bytes", "(985 characters)"],
    ["S3Action", { ...s3, ObjectKeyPrefix: "é".repeat(493) }, "ObjectKeyPrefix", "at most 984 bytes"],
    ["S3Action", { ...s3, ObjectKeyPrefix: ["in/"] }, "ObjectKeyPrefix", "expected a string, found an array"],
    ["S3Action", { ...s3, KmsKeyArn: "arn:aws:kms:us-east-1:1234:key/abc" }, "KmsKeyArn", "an ARN like arn:aws:kms:"],
    ["S3Action", { ...s3, KmsKeyArn: "arn:aws:kms:us-east-1:123456789012:grant/a" }, "KmsKeyArn", "an ARN like arn:aws:kms:"],
    ["S3Action", { ...s3, IamRoleArn: "arn:aws:iam:us-east-1:123456789012:role/r" }, "IamRoleArn", "like arn:aws:iam::"],
    ["S3Action", { ...s3, IamRoleArn: "arn:aws:iam::123456789012:user/u" }, "IamRoleArn", "like arn:aws:iam::"],
    ["S3Action", { ...s3, TopicArn: "arn:aws:sns:us-east-1:12345678901:t" }, "TopicArn", "an ARN like arn:aws:sns:"],
    ["S3Action", { ...s3, TopicArn: "arn:aws:sqs:us-east-1:123456789012:q" }, "TopicArn", "an ARN like arn:aws:sns:"],
    ["S3Action", { ...s3, TopicArn: "arn:aws-iso:sns:us-iso-east-1:123456789012:t" }, "TopicArn", "like arn:aws:sns:"],
    ["S3Action", { ...s3, TopicArn: "arn:aws:sns:us-east-1:123456789012:t.fifo" }, "TopicArn", "like arn:aws:sns:"],
    ["SNSAction", {}, "TopicArn", "missing required key TopicArn in SNSAction"],
    ["SNSAction", { TopicArn: "my-topic" }, "TopicArn", "an ARN like arn:aws:sns:", 'found "my-topic"'],
    ["SNSAction", { TopicArn: TOPIC, Encoding: "UTF8" }, "Encoding", 'expected one of "UTF-8", "Base64", found "UTF8"'],
    ["BounceAction", { ...bounce, SmtpReplyCode: undefined }, "SmtpReplyCode", "missing required key SmtpReplyCode"],
    ["BounceAction", { ...bounce, SmtpReplyCode: 550 }, "SmtpReplyCode", "expected a string, found a number (550)"],
    ["BounceAction", { ...bounce, SmtpReplyCode: "250" }, "SmtpReplyCode", "an SMTP reply code of the form [45]\\d\\d"],
    ["BounceAction", { ...bounce, SmtpReplyCode: "55" }, "SmtpReplyCode", "an SMTP reply code"],
    ["BounceAction", { ...bounce, SmtpReplyCode: "5500" }, "SmtpReplyCode", "an SMTP reply code"],
    ["BounceAction", { ...bounce, StatusCode: "5.1" }, "StatusCode", "an enhanced status code of the form"],
    ["BounceAction", { ...bounce, StatusCode: "2.0.0" }, "StatusCode", "an enhanced status code of the form"],
    ["BounceAction", { ...bounce, StatusCode: "5.1.1000" }, "StatusCode", "an enhanced status code of the form"],
    [
      "BounceAction",
      { ...bounce, StatusCode: "4.2.2" },
      "StatusCode",
      'expected a status code of class 5 like SmtpReplyCode "550", found "4.2.2"',
    ],
    ["BounceAction", { ...bounce, Message: "" }, "Message", 'expected a non-empty string, found ""'],
    ["BounceAction", { ...bounce, Message: undefined }, "Message", "missing required key Message"],
    ["BounceAction", { ...bounce, Sender: "postmaster" }, "Sender", 'expected an email address (user@example.com), found "postmaster"'],
    ["BounceAction", { ...bounce, Sender: undefined }, "Sender", "missing required key Sender"],
    ["BounceAction", { ...bounce, TopicArn: "t" }, "TopicArn", "an ARN like arn:aws:sns:"],
    ["LambdaAction", {}, "FunctionArn", "missing required key FunctionArn in LambdaAction"],
    ["LambdaAction", { FunctionArn: "arn:aws:lambda:us-east-1:123456789012:triage" }, "FunctionArn", "like arn:aws:lambda:"],
    ["LambdaAction", { FunctionArn: "triage" }, "FunctionArn", "an ARN like arn:aws:lambda:"],
    ["LambdaAction", { FunctionArn: `${FUNCTION}:a:b` }, "FunctionArn", "an ARN like arn:aws:lambda:"],
    [
      "LambdaAction",
      { FunctionArn: FUNCTION, InvocationType: "event" },
      "InvocationType",
      'expected one of "Event", "RequestResponse", found "event"',
    ],
    ["LambdaAction", { FunctionArn: FUNCTION, TopicArn: 1 }, "TopicArn", "expected a string, found a number (1)"],
    ["StopAction", {}, "Scope", "missing required key Scope in StopAction"],
    ["StopAction", { Scope: "Rule" }, "Scope", 'expected one of "RuleSet", found "Rule"'],
    ["StopAction", { Scope: "RuleSet", TopicArn: "" }, "TopicArn", "an ARN like arn:aws:sns:"],
    ["AddHeaderAction", { HeaderValue: "v" }, "HeaderName", "missing required key HeaderName"],
    ["AddHeaderAction", { HeaderName: "X-Tag" }, "HeaderValue", "missing required key HeaderValue"],
    ["AddHeaderAction", { ...header, HeaderName: "" }, "HeaderName", "a header name of 1 to 50 ASCII letters, digits or '-'"],
    ["AddHeaderAction", { ...header, HeaderName: "A".repeat(51) }, "HeaderName", "a header name of 1 to 50"],
    ["AddHeaderAction", { ...header, HeaderName: "X_Tag" }, "HeaderName", "a header name of 1 to 50"],
    ["AddHeaderAction", { ...header, HeaderName: "X-Tag:" }, "HeaderName", "a header name of 1 to 50"],
    ["AddHeaderAction", { ...header, HeaderValue: "v".repeat(2048) }, "HeaderValue", "under 2048 characters", "(2048 characters)"],
    ["AddHeaderAction", { ...header, HeaderValue: "a\r\nBcc: x@example.com" }, "HeaderValue", "a header value without CR or LF"],
    ["AddHeaderAction", { ...header, HeaderValue: "a\nb" }, "HeaderValue", "without CR or LF"],
    ["AddHeaderAction", { ...header, HeaderValue: "a\rb" }, "HeaderValue", "without CR or LF"],
    ["WorkmailAction", {}, "OrganizationArn", "missing required key OrganizationArn in WorkmailAction"],
    [
      "WorkmailAction",
      { OrganizationArn: "arn:aws:workmail:us-west-2:123456789012:organization/org-1" },
      "OrganizationArn",
      "an ARN like arn:aws:workmail:",
    ],
    ["WorkmailAction", { OrganizationArn: ORGANIZATION, TopicArn: "x" }, "TopicArn", "an ARN like arn:aws:sns:"],
  ];

  it.each(invalidActions)("%s %j: reports %s", (key, params, field, ...fragments) => {
    expectOneIssue(actionIssues({ [key]: params }), `Rules[0].Actions[0].${key}.${field}`, ...fragments);
  });
});

describe("all issues at once", () => {
  it("reports every problem of a document, each with its path", () => {
    const doc = {
      Metadata: { Name: "-bad-", CreatedTimestamp: "not a date" },
      Rules: [
        {
          Name: "first",
          Enable: true,
          TlsPolicy: "Required",
          Recipients: ["ok@example.com", "no domain"],
          Actions: [
            { S3Action: { BucketName: "Bad_Bucket", ObjectKeyPrefix: 1 } },
            { BounceAction: { SmtpReplyCode: "550", StatusCode: "4.0.0", Message: "", Sender: "nobody" } },
            { ConnectAction: {} },
            {},
          ],
        },
        { Enabled: "yes", ScanEnabled: true },
        { Name: "first", Actions: [{ AddHeaderAction: { HeaderName: "Bad Name", HeaderValue: "x\ny" }, Extra: 1 }] },
      ],
      Version: 2,
    };
    expect(setIssues(doc).map((issue) => issue.path)).toEqual([
      "Metadata.Name",
      "Metadata.CreatedTimestamp",
      "Rules[0].Enable",
      "Rules[0].TlsPolicy",
      "Rules[0].Recipients[1]",
      "Rules[0].Actions[0].S3Action.BucketName",
      "Rules[0].Actions[0].S3Action.ObjectKeyPrefix",
      "Rules[0].Actions[1].BounceAction.Message",
      "Rules[0].Actions[1].BounceAction.Sender",
      "Rules[0].Actions[1].BounceAction.StatusCode",
      "Rules[0].Actions[2].ConnectAction.InstanceARN",
      "Rules[0].Actions[2].ConnectAction.IAMRoleARN",
      "Rules[0].Actions[3]",
      "Rules[1].Enabled",
      "Rules[1].Name",
      "Rules[2].Actions[0].AddHeaderAction.HeaderName",
      "Rules[2].Actions[0].AddHeaderAction.HeaderValue",
      "Rules[2].Actions[0].Extra",
      "Rules[2].Name",
      "Version",
    ]);
  });

  it("throws one error listing every issue, one line each, prefixed by the source", () => {
    const rule = { Name: "r", Enabled: "yes", Actions: [{ StopAction: { Scope: "Rule" } }] };
    let caught: unknown;
    try {
      parseRuleSetText(JSON.stringify({ Rules: [rule], Extra: 1 }), "rules.json");
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(RuleSetValidationError);
    const error = caught as RuleSetValidationError;
    expect(error.name).toBe("RuleSetValidationError");
    expect(error.source).toBe("rules.json");
    expect(error.issues.map((issue) => issue.path)).toEqual([
      "Rules[0].Enabled",
      "Rules[0].Actions[0].StopAction.Scope",
      "Extra",
    ]);
    expect(error.message.split("\n")).toEqual([
      'rules.json: Rules[0].Enabled: expected a boolean (true or false), found a string ("yes")',
      'rules.json: Rules[0].Actions[0].StopAction.Scope: expected one of "RuleSet", found "Rule"',
      'rules.json: Extra: unknown key "Extra" in the output of aws ses describe-active-receipt-rule-set or ' +
        "describe-receipt-rule-set; allowed keys: Metadata, Rules",
    ]);
  });
});

describe("JSON text", () => {
  function syntaxIssue(text: string): ValidationIssue {
    try {
      parseRuleSetText(text, "rules.json");
    } catch (error) {
      if (error instanceof RuleSetValidationError && error.issues.length === 1 && error.issues[0]) {
        return error.issues[0];
      }
      throw error;
    }
    throw new Error("expected a syntax error");
  }

  // V8 words these differently and gives a position for only some of them; each shape is here.
  it.each([
    ["a missing comma", '{\n  "Rules": [\n    {"Name": "a"}\n    {"Name": "b"}\n  ]\n}', 4, 5, "Expected ',' or ']' after array element"],
    ["a trailing comma", '{\n  "Rules": [],\n}', 3, 1, "Expected double-quoted property name"],
    ["an unquoted key", "{\n  Rules: []\n}", 2, 3, "Expected property name or '}'"],
    ["a single-quoted key", "{'Rules': []}", 1, 2, "Expected property name or '}'"],
    ["a missing value in a short text", '{"Rules":}', 1, 10, "Unexpected token '}'"],
    ["a repeated token in a short text", "[1,2,,3]", 1, 6, "Unexpected token ','"],
    ["an unexpected token mid-text", '{\n  "Rules": [x],\n  "Metadata": {"Name": "set"}\n}', 2, 13, "Unexpected token 'x'"],
    ["an unexpected token on the last line", '{\n  "Metadata": {"Name": "set"},\n  "Rules": [x]\n}', 3, 13, "Unexpected token 'x'"],
    ["an unexpected token near the start", '[}, {"Name": "a"}, {"Name": "b"}]', 1, 2, "Unexpected token '}'"],
    ["an unexpected token near the end", '{"Metadata": {"Name": "a-long-name"}, "Rules": [}', 1, 49, "Unexpected token '}'"],
    ["a truncated text", '{\n  "Rules": [\n    {"Name": "a"},\n\n', 3, 19, "Unexpected end of JSON input"],
    ["an empty text", "", 1, 1, "Unexpected end of JSON input"],
    ["text after the document", '{"Rules": []}\n{}', 2, 1, "Unexpected non-whitespace character after JSON"],
  ])("reports %s with its line and column", (_, text, line, column, reason) => {
    expect(syntaxIssue(text)).toEqual({ path: "", message: `invalid JSON at line ${line}, column ${column}: ${reason}` });
  });

  it("gives the reason alone when V8's message has no position to find", () => {
    const parse = vi.spyOn(JSON, "parse").mockImplementationOnce(() => {
      throw new SyntaxError("Something new went wrong");
    });
    try {
      expect(syntaxIssue("{}")).toEqual({ path: "", message: "invalid JSON: Something new went wrong" });
    } finally {
      parse.mockRestore();
    }
  });

  it("prefixes the syntax error with the source", () => {
    const issue = { path: "", message: "invalid JSON at line 1, column 12: Unexpected end of JSON input" };
    expect(() => parseRuleSetText('{"Rules": [', "rules.json")).toThrow(new RuleSetValidationError("rules.json", [issue]));
    expect(() => parseFiltersText("[}", "filters.json")).toThrow(/^filters\.json: invalid JSON at line 1, column 2: /);
  });

  it("accepts a byte order mark", () => {
    expect(parseRuleSetText('\uFEFF{"Rules": []}', "rules.json")).toEqual({ name: "default", rules: [] });
  });
});

describe("files", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "receiptd-validate-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("reports an unreadable rule set file with its path", async () => {
    const missing = join(dir, "missing.json");
    const error: unknown = await loadRuleSetFile(missing).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RuleSetValidationError);
    expect((error as RuleSetValidationError).source).toBe(missing);
    expect((error as RuleSetValidationError).message.startsWith(`${missing}: cannot read the file: ENOENT`)).toBe(true);
  });

  it("reports a filters path that is not a regular file", async () => {
    await expect(loadFiltersFile(dir)).rejects.toThrow(/cannot read the file: not a regular file/);
  });

  it("refuses a FIFO instead of waiting for a writer", async () => {
    const fifo = join(dir, "rules.fifo");
    execFileSync("mkfifo", [fifo]);
    await expect(loadRuleSetFile(fifo)).rejects.toThrow(/cannot read the file: not a regular file/);
  });

  it("names the file in validation errors", async () => {
    const path = join(dir, "bad.json");
    await writeFile(path, JSON.stringify({ Rules: [{ Name: "r", Enable: true }] }));
    await expect(loadRuleSetFile(path)).rejects.toThrow(`${path}: Rules[0].Enable: unknown key "Enable"`);
  });
});

describe("IP filters", () => {
  it("loads the output of aws ses list-receipt-filters", async () => {
    expect(await loadFiltersFile(fixture("filters.json"))).toEqual([
      { name: "office", policy: "Allow", cidr: "203.0.113.0/24" },
      { name: "bad-host", policy: "Block", cidr: "198.51.100.7" },
      { name: "bad-net-v6", policy: "Block", cidr: "2001:db8::/32" },
    ]);
  });

  it("treats a document without Filters, or with none, as no filters", () => {
    expect(parseFiltersText("{}", "filters.json")).toEqual([]);
    expect(parseFiltersText('{"Filters": []}', "filters.json")).toEqual([]);
  });

  it.each(["10.0.0.1", "10.0.0.1/24", "0.0.0.0/0", "::1", "2001:db8::/32", "::/0", "::ffff:192.0.2.1"])(
    "accepts Cidr %j",
    (cidr) => {
      expect(parseFilters(withFilters(filter("f", "Block", cidr))).ok).toBe(true);
    },
  );

  it.each(["10.0.0.0/33", "10.0.0", "10.0.0.256", "10.0.0.0/", "2001:db8::/129", "fe80::1%eth0", "example.com", " 10.0.0.1", ""])(
    "rejects Cidr %j",
    (cidr) => {
      expectOneIssue(
        filterIssues(withFilters(filter("f", "Block", cidr))),
        "Filters[0].IpFilter.Cidr",
        "expected an IPv4 or IPv6 address or CIDR range",
        `found ${JSON.stringify(cidr)}`,
      );
    },
  );

  it("requires Policy Allow or Block", () => {
    const path = "Filters[0].IpFilter.Policy";
    expectOneIssue(filterIssues(withFilters(filter("f", "Deny", "10.0.0.1"))), path, 'expected one of "Allow", "Block", found "Deny"');
    expectOneIssue(filterIssues(withFilters(filter("f", "allow", "10.0.0.1"))), path, 'found "allow"');
  });

  it("requires Name and IpFilter, and IpFilter's Policy and Cidr", () => {
    expect(filterIssues(withFilters({}, { Name: "f", IpFilter: {} }))).toEqual([
      { path: "Filters[0].Name", message: "missing required key Name in ReceiptFilter" },
      { path: "Filters[0].IpFilter", message: "missing required key IpFilter in ReceiptFilter" },
      { path: "Filters[1].IpFilter.Policy", message: "missing required key Policy in ReceiptIpFilter" },
      { path: "Filters[1].IpFilter.Cidr", message: "missing required key Cidr in ReceiptIpFilter" },
    ]);
  });

  it("rejects unknown keys in a filter and in its IpFilter", () => {
    const misplaced = { ...filter("f", "Allow", "10.0.0.1"), Policy: "Allow" };
    const extra = { Name: "g", IpFilter: { Policy: "Allow", Cidr: "10.0.0.2", Mask: 24 } };
    expect(filterIssues(withFilters(misplaced, extra))).toEqual([
      { path: "Filters[0].Policy", message: 'unknown key "Policy" in ReceiptFilter; allowed keys: Name, IpFilter' },
      { path: "Filters[1].IpFilter.Mask", message: 'unknown key "Mask" in ReceiptIpFilter; allowed keys: Policy, Cidr' },
    ]);
    expectOneIssue(filterIssues({ Filters: [], NextToken: "x" }), "NextToken", 'unknown key "NextToken"', "allowed keys: Filters");
  });

  it("rejects two filters with the same name", () => {
    expectOneIssue(
      filterIssues(withFilters(filter("dup", "Allow", "10.0.0.1"), filter("dup", "Block", "10.0.0.2"))),
      "Filters[1].Name",
      'expected a unique Name, found "dup" again (first at Filters[0].Name)',
    );
  });

  it("accepts 100 filters and rejects 101", () => {
    const filters = (n: number) => Array.from({ length: n }, (_, i) => filter(`f${i}`, "Block", `10.0.${i}.0/24`));
    expect(parseFilters(withFilters(...filters(100))).ok).toBe(true);
    expectOneIssue(filterIssues(withFilters(...filters(101))), "Filters", "expected at most 100 IP filters, found 101");
  });

  it("rejects a document that is not the output of list-receipt-filters", () => {
    expectOneIssue(
      filterIssues([filter("f", "Allow", "10.0.0.1")]),
      "",
      "expected an object (the output of aws ses list-receipt-filters), found an array",
    );
    expect(filterIssues({ Rules: [] })).toEqual([
      { path: "Rules", message: 'unknown key "Rules" in the output of aws ses list-receipt-filters; allowed keys: Filters' },
    ]);
  });
});
