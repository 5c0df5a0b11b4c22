// CreateReceiptRule and UpdateReceiptRule check a rule's targets where the back end can tell:
// a real S3-compatible server (s3rver), and SNS and Lambda servers speaking the SDK's wire protocols.
import { CreateReceiptRuleCommand, CreateReceiptRuleSetCommand, DescribeReceiptRuleSetCommand, UpdateReceiptRuleCommand, VerifyDomainIdentityCommand } from "@aws-sdk/client-ses";
import type { ReceiptRule, SESClient } from "@aws-sdk/client-ses";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApiDaemon } from "../helpers/api-daemon.js";
import type { ApiDaemon } from "../helpers/api-daemon.js";
import type { TestEndpoint } from "../helpers/aws-http.js";
import { startLambdaServer } from "../helpers/aws-lambda-server.js";
import { S3RVER_CREDENTIALS, startS3rver } from "../helpers/aws-s3rver.js";
import type { S3rverHandle } from "../helpers/aws-s3rver.js";
import { startSnsServer } from "../helpers/aws-sns-server.js";

const TOPIC = "arn:aws:sns:us-east-1:123456789012:mail";
const FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:triage";

async function errorOf(promise: Promise<unknown>): Promise<Record<string, unknown>> {
  try {
    await promise;
  } catch (error) {
    const e = error as { name: string; message: string; Bucket?: string; Topic?: string; FunctionArn?: string };
    return { name: e.name, message: e.message, ...(e.Bucket ? { Bucket: e.Bucket } : {}), ...(e.Topic ? { Topic: e.Topic } : {}), ...(e.FunctionArn ? { FunctionArn: e.FunctionArn } : {}) };
  }
  throw new Error("expected the call to fail");
}

const rule = (actions: ReceiptRule["Actions"], name = "r"): ReceiptRule => ({ Name: name, Enabled: true, Actions: actions });

describe("rule targets against the local back end", () => {
  let api: ApiDaemon;
  let ses: SESClient;
  beforeAll(async () => {
    api = await startApiDaemon();
    ses = api.client();
    await ses.send(new CreateReceiptRuleSetCommand({ RuleSetName: "set" }));
  });
  afterAll(async () => api?.stop());

  it("refuses a Lambda function without a configured handler, and a Bounce sender that is not verified", async () => {
    const missing = "arn:aws:lambda:us-east-1:123456789012:function:nowhere";
    expect(await errorOf(ses.send(new CreateReceiptRuleCommand({ RuleSetName: "set", Rule: rule([{ LambdaAction: { FunctionArn: missing } }]) })))).toEqual({
      name: "InvalidLambdaFunctionException",
      message: `Could not invoke Lambda function: ${missing}`,
      FunctionArn: missing,
    });
    const configured = "arn:aws:lambda:us-east-1:123456789012:function:triage-abuse";
    await ses.send(new CreateReceiptRuleCommand({ RuleSetName: "set", Rule: rule([{ LambdaAction: { FunctionArn: configured } }]) }));

    const bounce = { BounceAction: { Sender: "postmaster@example.net", SmtpReplyCode: "550", Message: "no" } };
    expect(await errorOf(ses.send(new CreateReceiptRuleCommand({ RuleSetName: "set", Rule: rule([bounce], "b") })))).toEqual({
      name: "InvalidParameterValue",
      message: "Identity is not verified: postmaster@example.net",
    });
    await ses.send(new VerifyDomainIdentityCommand({ Domain: "example.net" }));
    await ses.send(new CreateReceiptRuleCommand({ RuleSetName: "set", Rule: rule([bounce], "b") }));
    // Validation comes before the targets: a malformed rule names its problem, not a target.
    expect(await errorOf(ses.send(new UpdateReceiptRuleCommand({ RuleSetName: "set", Rule: rule([{ S3Action: { BucketName: "Bad_Bucket" } }], "b") })))).toMatchObject({
      name: "InvalidParameterValue",
      message: expect.stringContaining("Rule.Actions[0].S3Action.BucketName"),
    });
    expect((await ses.send(new DescribeReceiptRuleSetCommand({ RuleSetName: "set" }))).Rules?.map((r) => r.Name)).toEqual(["b", "r"]);
  });
});

describe("rule targets against AWS back ends", () => {
  let api: ApiDaemon;
  let ses: SESClient;
  let s3: S3rverHandle;
  let sns: TestEndpoint;
  let lambda: TestEndpoint;
  const env = { ...process.env };
  beforeAll(async () => {
    s3 = await startS3rver(["mail"]);
    sns = await startSnsServer({ [TOPIC]: "ok" });
    lambda = await startLambdaServer({ [FUNCTION]: () => "null" });
    // The SDK's default chain, as in production; s3rver checks these, the others accept any.
    process.env.AWS_ACCESS_KEY_ID = S3RVER_CREDENTIALS.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = S3RVER_CREDENTIALS.secretAccessKey;
    api = await startApiDaemon({
      backends: { S3: "aws", SNS: "aws", Lambda: "aws" },
      aws: { region: "us-east-1", s3: { endpoint: s3.endpoint, forcePathStyle: true }, sns: { endpoint: sns.endpoint }, lambda: { endpoint: lambda.endpoint } },
    });
    ses = api.client();
    await ses.send(new CreateReceiptRuleSetCommand({ RuleSetName: "set" }));
  });
  afterAll(async () => {
    await api?.stop();
    await Promise.all([s3?.close(), sns?.close(), lambda?.close()]);
    process.env = env;
  });

  it("answers InvalidS3Configuration, InvalidSnsTopic and InvalidLambdaFunction with the modeled members, and writes nothing", async () => {
    expect(await errorOf(ses.send(new CreateReceiptRuleCommand({ RuleSetName: "set", Rule: rule([{ S3Action: { BucketName: "missing-bucket" } }]) })))).toEqual({
      name: "InvalidS3ConfigurationException",
      message: "No such bucket: missing-bucket",
      Bucket: "missing-bucket",
    });
    const otherTopic = "arn:aws:sns:us-east-1:123456789012:nowhere";
    expect(
      await errorOf(ses.send(new CreateReceiptRuleCommand({ RuleSetName: "set", Rule: rule([{ S3Action: { BucketName: "mail", TopicArn: otherTopic } }]) }))),
    ).toEqual({ name: "InvalidSnsTopicException", message: `Could not publish to SNS topic: ${otherTopic}`, Topic: otherTopic });
    const otherFunction = "arn:aws:lambda:us-east-1:123456789012:function:nowhere";
    expect(await errorOf(ses.send(new CreateReceiptRuleCommand({ RuleSetName: "set", Rule: rule([{ LambdaAction: { FunctionArn: otherFunction } }]) })))).toEqual({
      name: "InvalidLambdaFunctionException",
      message: `Could not invoke Lambda function: ${otherFunction}`,
      FunctionArn: otherFunction,
    });
    expect((await ses.send(new DescribeReceiptRuleSetCommand({ RuleSetName: "set" }))).Rules).toEqual([]);

    await ses.send(
      new CreateReceiptRuleCommand({
        RuleSetName: "set",
        Rule: rule([{ S3Action: { BucketName: "mail", TopicArn: TOPIC } }, { SNSAction: { TopicArn: TOPIC } }, { LambdaAction: { FunctionArn: FUNCTION } }]),
      }),
    );
    expect(
      await errorOf(ses.send(new UpdateReceiptRuleCommand({ RuleSetName: "set", Rule: rule([{ SNSAction: { TopicArn: otherTopic } }]) }))),
    ).toMatchObject({ name: "InvalidSnsTopicException" });
    expect((await ses.send(new DescribeReceiptRuleSetCommand({ RuleSetName: "set" }))).Rules?.[0]?.Actions).toHaveLength(3);
  });
});
