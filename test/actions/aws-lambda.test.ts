import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { awsBackend } from "../../src/actions/aws/index.js";
import { actionFailure } from "../helpers/action-error.js";
import type { TestEndpoint } from "../helpers/aws-http.js";
import { invokedFunction, slowFunction, startLambdaServer } from "../helpers/aws-lambda-server.js";
import { DUMMY_CREDENTIALS, noTransports } from "../helpers/aws-options.js";

const arn = (name: string) => `arn:aws:lambda:eu-west-1:123456789012:function:${name}`;
const SES_EVENT = JSON.stringify({ Records: [{ eventSource: "aws:ses", eventVersion: "1.0", ses: { mail: { messageId: "m1" }, receipt: {} } }] });

let lambda: TestEndpoint;
beforeAll(async () => {
  lambda = await startLambdaServer({
    [arn("filter")]: () => JSON.stringify({ disposition: "STOP_RULE" }),
    [arn("silent")]: () => "",
    [arn("broken")]: () => {
      throw new Error("database unreachable");
    },
    [arn("garbled")]: () => "<html>not json</html>",
    [arn("slow")]: slowFunction(10_000, "{}"),
  });
});
afterAll(() => lambda.close());
afterEach(() => {
  lambda.requests.length = 0;
});

const backend = (requestResponseTimeoutMs?: number) =>
  awsBackend({ lambda: { endpoint: lambda.endpoint, credentials: DUMMY_CREDENTIALS }, requestResponseTimeoutMs, ...noTransports });

describe("AWS back end: Lambda invoke", () => {
  it("invokes RequestResponse with the event as payload and parses the function's result", async () => {
    const outcome = await backend().invoke({ functionArn: arn("filter"), invocationType: "RequestResponse", payload: SES_EVENT });

    expect(outcome).toEqual({ result: { disposition: "STOP_RULE" }, detail: { statusCode: 200, executedVersion: "$LATEST" } });
    expect(lambda.requests).toHaveLength(1);
    const request = lambda.requests[0]!;
    expect(request.method).toBe("POST");
    expect(invokedFunction(request)).toBe(arn("filter"));
    expect(request.headers["x-amz-invocation-type"]).toBe("RequestResponse");
    expect(request.body).toBe(SES_EVENT);
  });

  it("invokes Event asynchronously, with no result", async () => {
    const outcome = await backend().invoke({ functionArn: arn("filter"), invocationType: "Event", payload: SES_EVENT });

    expect(outcome).toEqual({ result: null, detail: { statusCode: 202 } });
    expect(lambda.requests[0]?.headers["x-amz-invocation-type"]).toBe("Event");
    expect(lambda.requests[0]?.body).toBe(SES_EVENT);
  });

  it("takes an empty response payload as a null result", async () => {
    const outcome = await backend().invoke({ functionArn: arn("silent"), invocationType: "RequestResponse", payload: SES_EVENT });
    expect(outcome.result).toBeNull();
  });

  it("fails permanently for a function that does not exist", async () => {
    const failure = await actionFailure(backend().invoke({ functionArn: arn("missing"), invocationType: "Event", payload: SES_EVENT }));
    expect(failure.failure).toBe("permanent");
    expect(failure.message).toBe(
      `Lambda Invoke ${arn("missing")}: ResourceNotFoundException (HTTP 404): Function not found: ${arn("missing")}`,
    );
  });

  it("fails transiently when the function itself fails", async () => {
    const failure = await actionFailure(backend().invoke({ functionArn: arn("broken"), invocationType: "RequestResponse", payload: SES_EVENT }));
    expect(failure.failure).toBe("transient");
    expect(failure.message).toContain("the function failed (Unhandled)");
    expect(failure.message).toContain("database unreachable");
  });

  it("fails permanently when the function's payload is not JSON", async () => {
    const failure = await actionFailure(backend().invoke({ functionArn: arn("garbled"), invocationType: "RequestResponse", payload: SES_EVENT }));
    expect(failure.failure).toBe("permanent");
    expect(failure.message).toContain("<html>not json</html>");
  });

  it("gives up on a RequestResponse invocation after the timeout, transiently", async () => {
    const started = Date.now();
    const failure = await actionFailure(backend(200).invoke({ functionArn: arn("slow"), invocationType: "RequestResponse", payload: SES_EVENT }));
    expect(failure.failure).toBe("transient");
    expect(failure.message).toBe(`Lambda Invoke ${arn("slow")}: timed out after 0.2 s`);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(lambda.requests).toHaveLength(1);
  });
});
