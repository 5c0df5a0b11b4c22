import { randomUUID } from "node:crypto";
import { startEndpoint } from "./aws-http.js";
import type { RecordedRequest, Reply, TestEndpoint } from "./aws-http.js";

/** How the fake SNS treats a topic; topics it is not told about do not exist. */
export type TopicBehaviour = "ok" | "unavailable" | "throttled" | "denied";

/**
 * A fake SNS speaking what @aws-sdk/client-sns sends: the AWS Query protocol (form-encoded
 * POST to `/`, answered in XML), with the response and error documents SNS returns.
 */
export function startSnsServer(topics: Record<string, TopicBehaviour>): Promise<TestEndpoint> {
  return startEndpoint((request) => answer(request, topics));
}

/** The form parameters of a Query request. */
export function queryParameters(request: RecordedRequest): Record<string, string> {
  return Object.fromEntries(new URLSearchParams(request.body));
}

function answer(request: RecordedRequest, topics: Record<string, TopicBehaviour>): Reply {
  const params = queryParameters(request);
  if (request.method !== "POST" || params["Version"] !== "2010-03-31") {
    return error(400, "Sender", "InvalidAction", "Could not find operation");
  }
  if (params["Action"] !== "Publish" && params["Action"] !== "GetTopicAttributes") {
    return error(400, "Sender", "InvalidAction", `Could not find operation ${params["Action"] ?? ""}`);
  }
  const topicArn = params["TopicArn"] ?? "";
  const behaviour = topics[topicArn];
  if (behaviour === undefined) return error(404, "Sender", "NotFound", "Topic does not exist");
  if (params["Action"] === "GetTopicAttributes" && behaviour !== "denied") {
    return xml(
      200,
      `<GetTopicAttributesResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
  <GetTopicAttributesResult>
    <Attributes><entry><key>TopicArn</key><value>${escapeXml(topicArn)}</value></entry></Attributes>
  </GetTopicAttributesResult>
  <ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata>
</GetTopicAttributesResponse>`,
    );
  }
  switch (behaviour) {
    case "unavailable":
      return error(503, "Receiver", "ServiceUnavailable", "Service is unavailable");
    case "throttled":
      return error(429, "Sender", "Throttled", "Rate exceeded");
    case "denied":
      return error(
        403,
        "Sender",
        "AuthorizationError",
        `User: arn:aws:iam::123456789012:user/receiptd is not authorized to perform: SNS:Publish on resource: ${topicArn}`,
      );
    case "ok":
      return xml(
        200,
        `<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
  <PublishResult>
    <MessageId>${randomUUID()}</MessageId>
  </PublishResult>
  <ResponseMetadata>
    <RequestId>${randomUUID()}</RequestId>
  </ResponseMetadata>
</PublishResponse>`,
      );
  }
}

function error(status: number, type: "Sender" | "Receiver", code: string, message: string): Reply {
  return xml(
    status,
    `<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
  <Error>
    <Type>${type}</Type>
    <Code>${code}</Code>
    <Message>${escapeXml(message)}</Message>
  </Error>
  <RequestId>${randomUUID()}</RequestId>
</ErrorResponse>`,
  );
}

function xml(status: number, body: string): Reply {
  return { status, headers: { "content-type": "text/xml", "x-amzn-requestid": randomUUID() }, body };
}

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}
