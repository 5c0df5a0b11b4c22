import net from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { awsBackend } from "../../src/actions/aws/index.js";
import { actionFailure } from "../helpers/action-error.js";
import { signingRegion } from "../helpers/aws-http.js";
import type { TestEndpoint } from "../helpers/aws-http.js";
import { DUMMY_CREDENTIALS, noTransports } from "../helpers/aws-options.js";
import { queryParameters, startSnsServer } from "../helpers/aws-sns-server.js";

const TOPIC = "arn:aws:sns:eu-west-1:123456789012:inbound";
const TOPIC_US_WEST = "arn:aws:sns:us-west-2:123456789012:inbound";
const FLAKY = "arn:aws:sns:eu-west-1:123456789012:flaky";
const THROTTLED = "arn:aws:sns:eu-west-1:123456789012:throttled";
const DENIED = "arn:aws:sns:eu-west-1:123456789012:denied";
const MISSING = "arn:aws:sns:eu-west-1:123456789012:missing";

let sns: TestEndpoint;
beforeAll(async () => {
  sns = await startSnsServer({ [TOPIC]: "ok", [TOPIC_US_WEST]: "ok", [FLAKY]: "unavailable", [THROTTLED]: "throttled", [DENIED]: "denied" });
});
afterAll(() => sns.close());
afterEach(() => {
  sns.requests.length = 0;
});

const backend = () => awsBackend({ sns: { endpoint: sns.endpoint, credentials: DUMMY_CREDENTIALS }, ...noTransports });

describe("AWS back end: SNS publish", () => {
  it("sends Publish in the AWS Query protocol with the topic, subject and message exact", async () => {
    const message = JSON.stringify({ notificationType: "Received", content: "Subject: héllo & <bye>\r\n\r\n+%= 100%\r\n" });
    const result = await backend().publish({ topicArn: TOPIC, subject: "Amazon SES Email Receipt Notification", message });

    expect(sns.requests).toHaveLength(1);
    const request = sns.requests[0]!;
    expect(request.method).toBe("POST");
    expect(request.headers["content-type"]).toBe("application/x-www-form-urlencoded");
    expect(request.headers["x-amz-target"]).toBeUndefined();
    expect(queryParameters(request)).toEqual({
      Action: "Publish",
      Version: "2010-03-31",
      TopicArn: TOPIC,
      Subject: "Amazon SES Email Receipt Notification",
      Message: message,
    });
    expect(result).toEqual({ messageId: expect.stringMatching(/^[0-9a-f-]{36}$/) });
  });

  it("signs for the region in the topic ARN, whatever the default region", async () => {
    const b = awsBackend({ region: "ap-southeast-2", sns: { endpoint: sns.endpoint, credentials: DUMMY_CREDENTIALS }, ...noTransports });
    await b.publish({ topicArn: TOPIC, subject: "s", message: "m" });
    await b.publish({ topicArn: TOPIC_US_WEST, subject: "s", message: "m" });
    await b.publish({ topicArn: TOPIC, subject: "s", message: "m" });
    expect(sns.requests.map(signingRegion)).toEqual(["eu-west-1", "us-west-2", "eu-west-1"]);
  });

  it("fails permanently for a topic that does not exist", async () => {
    const failure = await actionFailure(backend().publish({ topicArn: MISSING, subject: "s", message: "m" }));
    expect(failure.failure).toBe("permanent");
    expect(failure.message).toBe(`SNS Publish ${MISSING}: NotFoundException (HTTP 404): Topic does not exist`);
  });

  it("fails permanently when not authorized to publish", async () => {
    const failure = await actionFailure(backend().publish({ topicArn: DENIED, subject: "s", message: "m" }));
    expect(failure.failure).toBe("permanent");
    expect(failure.message).toContain("AuthorizationErrorException (HTTP 403)");
  });

  it("fails transiently on 503, after the SDK's few attempts", async () => {
    const failure = await actionFailure(backend().publish({ topicArn: FLAKY, subject: "s", message: "m" }));
    expect(failure.failure).toBe("transient");
    expect(failure.message).toContain("(HTTP 503): Service is unavailable");
    expect(sns.requests).toHaveLength(3);
  });

  it("fails transiently when throttled", async () => {
    const failure = await actionFailure(backend().publish({ topicArn: THROTTLED, subject: "s", message: "m" }));
    expect(failure.failure).toBe("transient");
    expect(failure.message).toContain("ThrottledException (HTTP 429)");
  });

  it("leaves the endpoint to AWS_ENDPOINT_URL_SNS when none is configured", async () => {
    const saved = process.env["AWS_ENDPOINT_URL_SNS"];
    process.env["AWS_ENDPOINT_URL_SNS"] = sns.endpoint;
    try {
      await awsBackend({ sns: { credentials: DUMMY_CREDENTIALS }, ...noTransports }).publish({ topicArn: TOPIC, subject: "s", message: "m" });
    } finally {
      if (saved === undefined) delete process.env["AWS_ENDPOINT_URL_SNS"];
      else process.env["AWS_ENDPOINT_URL_SNS"] = saved;
    }
    expect(sns.requests).toHaveLength(1);
  });

  it("fails transiently when the endpoint accepts the connection and never answers", async () => {
    const silent = net.createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const { port } = silent.address() as net.AddressInfo;
    try {
      const hung = awsBackend({
        sns: { endpoint: `http://127.0.0.1:${port}`, credentials: DUMMY_CREDENTIALS },
        timeouts: { idleMs: 300 },
        ...noTransports,
      });
      const started = Date.now();
      const error = await actionFailure(hung.publish({ topicArn: TOPIC, subject: "s", message: "m" }));
      expect(error.failure).toBe("transient");
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      silent.close();
    }
  });
});
