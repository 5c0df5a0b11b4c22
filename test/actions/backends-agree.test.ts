// The same rule set and message through the AWS back end (against a real S3-compatible
// server and SNS/Lambda servers speaking the SDK's wire protocols) and through the local
// back end: the events must be the same bytes, so consumers cannot tell them apart.
import { GetObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { executorFromConfig } from "../../src/actions/compose.js";
import { parseConfig } from "../../src/config/config.js";
import { replayMessage } from "../../src/replay/replay.js";
import type { ReplayResult, ReplaySettings } from "../../src/replay/replay.js";
import { parseRuleSet } from "../../src/rules/parse.js";
import { identitiesFrom } from "../../src/rules/recipients.js";
import type { TestEndpoint } from "../helpers/aws-http.js";
import { invokedFunction, startLambdaServer } from "../helpers/aws-lambda-server.js";
import { S3RVER_CREDENTIALS, startS3rver } from "../helpers/aws-s3rver.js";
import type { S3rverHandle } from "../helpers/aws-s3rver.js";
import { queryParameters, startSnsServer } from "../helpers/aws-sns-server.js";

const TOPIC = "arn:aws:sns:us-east-1:123456789012:inbound";
const RAW_TOPIC = "arn:aws:sns:us-east-1:123456789012:raw";
const FILTER = "arn:aws:lambda:us-east-1:123456789012:function:filter";
// Its handler throws: an Event invocation is accepted before the function runs, so on neither back end can it fail the rule.
const BROKEN = "arn:aws:lambda:us-east-1:123456789012:function:broken";
const RECEIVED_AT = new Date("2026-11-23T10:00:00.000Z");
const NOW = new Date("2026-11-23T10:00:00.250Z");

const RULES = {
  Metadata: { Name: "agree" },
  Rules: [
    {
      Name: "store",
      Enabled: true,
      Recipients: ["example.com"],
      Actions: [
        { AddHeaderAction: { HeaderName: "X-Stage", HeaderValue: "stored" } },
        { S3Action: { BucketName: "inbound", ObjectKeyPrefix: "mail/", TopicArn: TOPIC } },
        { SNSAction: { TopicArn: RAW_TOPIC, Encoding: "Base64" } },
        { LambdaAction: { FunctionArn: BROKEN, InvocationType: "Event" } },
        { LambdaAction: { FunctionArn: FILTER, InvocationType: "RequestResponse", TopicArn: TOPIC } },
        { SNSAction: { TopicArn: RAW_TOPIC } },
      ],
    },
    { Name: "after", Enabled: true, Recipients: ["info@example.com"], Actions: [{ StopAction: { Scope: "RuleSet", TopicArn: TOPIC } }] },
  ],
};

let scratch: string;
let s3: S3rverHandle;
let sns: TestEndpoint;
let lambda: TestEndpoint;
const savedEnv = { ...process.env };

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "receiptd-agree-"));
  s3 = await startS3rver(["inbound"]);
  sns = await startSnsServer({ [TOPIC]: "ok", [RAW_TOPIC]: "ok" });
  lambda = await startLambdaServer({
    [FILTER]: () => JSON.stringify({ disposition: "STOP_RULE" }),
    [BROKEN]: () => {
      throw new Error("broken");
    },
  });
  await writeFile(join(scratch, "filter.mjs"), 'export const handler = async () => ({ disposition: "STOP_RULE" });\n');
  await writeFile(join(scratch, "broken.mjs"), 'export const handler = async () => { throw new Error("broken"); };\n');
  // The AWS back end takes credentials from the SDK's default chain, as in production.
  process.env.AWS_ACCESS_KEY_ID = S3RVER_CREDENTIALS.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = S3RVER_CREDENTIALS.secretAccessKey;
});

afterAll(async () => {
  process.env = savedEnv;
  await Promise.all([s3?.close(), sns?.close(), lambda?.close()]);
  await rm(scratch, { recursive: true, force: true });
});

async function replayWith(backend: "aws" | "local"): Promise<ReplayResult> {
  const parsed = parseRuleSet(RULES);
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.issues));
  const config = parseConfig(
    {
      dataDir: `data-${backend}`,
      aws: {
        region: "us-east-1",
        s3: { endpoint: s3.endpoint, forcePathStyle: true },
        sns: { endpoint: sns.endpoint },
        lambda: { endpoint: lambda.endpoint },
      },
      // Port 9 (discard) refuses: a subscriber that is down cannot fail a Publish either.
      local: { lambdaHandlers: { [FILTER]: "./filter.mjs", [BROKEN]: "./broken.mjs" }, snsHttpSubscriptions: { "*": ["http://127.0.0.1:9/sns"] } },
    },
    { source: "test", baseDir: scratch, env: {}, backend },
  );
  const settings: ReplaySettings = {
    ruleSet: parsed.value,
    filters: null,
    identities: identitiesFrom(["example.com"]),
    tls: false,
    clock: () => RECEIVED_AT,
    executor: executorFromConfig(config, { clock: () => NOW }),
  };
  return replayMessage("samples/non-ascii.eml", settings);
}

async function jsonLines(file: string): Promise<{ message: string }[]> {
  return (await readFile(file, "utf8"))
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as { message: string });
}

/**
 * The added header, then the stored message (docs/behaviour.md §5): the receipt headers on top
 * and the sample below them, less its own Return-Path (its first line).
 */
async function expectStoredWithHeader(bytes: Buffer): Promise<void> {
  const original = await readFile("samples/non-ascii.eml");
  const text = bytes.toString("latin1");
  expect(text.startsWith("X-Stage: stored\r\nReturn-Path: <jose@example.org>\r\nReceived: from ")).toBe(true);
  expect(bytes.subarray(bytes.length - (original.length - original.indexOf("\r\n") - 2)).equals(original.subarray(original.indexOf("\r\n") + 2))).toBe(true);
}

describe("the AWS and local back ends produce the same events", () => {
  let aws: ReplayResult;
  let local: ReplayResult;
  beforeAll(async () => {
    aws = await replayWith("aws");
    local = await replayWith("local");
  });

  it("both run the same actions with the same flow", () => {
    const outline = (r: ReplayResult) => r.trace!.rules.map((rule) => [rule.name, rule.stop, rule.actions.map((a) => a.outcome)]);
    expect(outline(aws)).toEqual([
      ["store", "STOP_RULE", ["done", "done", "done", "done", "done", "skipped"]],
      ["after", "Stop", ["done"]],
    ]);
    expect(outline(local)).toEqual(outline(aws));
    expect(local.messageId).toBe(aws.messageId);
  });

  it("S3 objects are the same bytes: the message with the added header on top", async () => {
    const client = new S3Client({
      region: "us-east-1",
      endpoint: s3.endpoint,
      forcePathStyle: true,
      credentials: S3RVER_CREDENTIALS,
    });
    const key = `mail/${aws.messageId}`;
    const object = await client.send(new GetObjectCommand({ Bucket: "inbound", Key: key }));
    const fromS3 = Buffer.from(await object.Body!.transformToByteArray());
    const fromDisk = await readFile(join(scratch, "data-local", "s3", "inbound", "mail", aws.messageId));
    expect(fromS3.equals(fromDisk)).toBe(true);
    await expectStoredWithHeader(fromS3);
    client.destroy();
  });

  it("SNS notifications are byte-identical, in the same order", async () => {
    const published = sns.requests.map((request) => queryParameters(request));
    expect(published.every((p) => p.Subject === "Amazon SES Email Receipt Notification")).toBe(true);
    const awsByTopic = (topic: string) => published.filter((p) => p.TopicArn === topic).map((p) => p.Message);
    const localTopic = async (name: string) => (await jsonLines(join(scratch, "data-local", "sns", `${name}.jsonl`))).map((l) => l.message);

    expect(awsByTopic(TOPIC)).toHaveLength(3);
    expect(await localTopic("inbound")).toEqual(awsByTopic(TOPIC));
    expect(await localTopic("raw")).toEqual(awsByTopic(RAW_TOPIC));

    const [s3Notification, lambdaNotification, stopNotification] = awsByTopic(TOPIC).map((m) => JSON.parse(m!));
    expect(s3Notification.receipt.action).toEqual({
      type: "S3",
      topicArn: TOPIC,
      bucketName: "inbound",
      objectKeyPrefix: "mail/",
      objectKey: `mail/${aws.messageId}`,
    });
    expect(s3Notification).not.toHaveProperty("content");
    expect(s3Notification.mail.headers[0]).toEqual({ name: "X-Stage", value: "stored" });
    expect(s3Notification.mail.timestamp).toBe("2026-11-23T10:00:00.000Z");
    expect(s3Notification.receipt.processingTimeMillis).toBe(250);
    expect(s3Notification.receipt.recipients).toEqual(["user@example.com", "info@example.com"]);
    expect(lambdaNotification.receipt.action).toEqual({ type: "Lambda", topicArn: TOPIC, functionArn: FILTER, invocationType: "RequestResponse" });
    expect(stopNotification.receipt.action).toEqual({ type: "Stop", topicArn: TOPIC });
    expect(stopNotification.receipt.recipients).toEqual(["info@example.com"]);

    const [raw] = awsByTopic(RAW_TOPIC).map((m) => JSON.parse(m!));
    expect(raw.receipt.action).toEqual({ type: "SNS", topicArn: RAW_TOPIC, encoding: "BASE64" });
    await expectStoredWithHeader(Buffer.from(raw.content, "base64"));
  });

  it("the Lambda event is the same bytes in both", async () => {
    const invocations = lambda.requests.filter((request) => invokedFunction(request) === FILTER);
    expect(invocations).toHaveLength(1);
    expect(invocations[0]!.headers["x-amz-invocation-type"]).toBe("RequestResponse");
    const [line] = (await readFile(join(scratch, "data-local", "lambda", "filter.jsonl"), "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { event: unknown });
    expect(JSON.stringify(line!.event)).toBe(invocations[0]!.body);
    const event = JSON.parse(invocations[0]!.body);
    expect(event.Records[0].eventSource).toBe("aws:ses");
    expect(event.Records[0].ses.receipt.action).toEqual({ type: "Lambda", topicArn: TOPIC, functionArn: FILTER, invocationType: "RequestResponse" });
  });
});
