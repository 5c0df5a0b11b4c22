import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { startEndpoint } from "./aws-http.js";
import type { RecordedRequest, Reply, TestEndpoint } from "./aws-http.js";

/** A fake function: given the invocation payload, returns the raw response payload, or throws. */
export type FakeFunction = (payload: string) => Promise<string> | string;

const INVOKE_PATH = /^\/2015-03-31\/functions\/([^/]+)\/invocations(?:\?.*)?$/;
const FUNCTION_PATH = /^\/2015-03-31\/functions\/([^/?]+)(?:\?.*)?$/;

/**
 * A fake Lambda speaking the REST-JSON protocol of Invoke: POST
 * `/2015-03-31/functions/{FunctionName}/invocations`, invocation type in
 * `X-Amz-Invocation-Type`, the payload as the body both ways, errors as `x-amzn-ErrorType`
 * plus a JSON document. Functions are keyed by the ARN the client sends.
 */
export function startLambdaServer(functions: Record<string, FakeFunction>): Promise<TestEndpoint> {
  return startEndpoint((request) => answer(request, functions));
}

/** The function name (or ARN) a request invoked. */
export function invokedFunction(request: RecordedRequest): string | undefined {
  const encoded = INVOKE_PATH.exec(request.path)?.[1];
  return encoded === undefined ? undefined : decodeURIComponent(encoded);
}

/** A function that answers after `ms`, without keeping the test process alive. */
export function slowFunction(ms: number, result: string): FakeFunction {
  return async () => {
    await sleep(ms, undefined, { ref: false });
    return result;
  };
}

async function answer(request: RecordedRequest, functions: Record<string, FakeFunction>): Promise<Reply> {
  const described = FUNCTION_PATH.exec(request.path)?.[1];
  if (request.method === "GET" && described !== undefined) {
    const arn = decodeURIComponent(described);
    if (functions[arn] === undefined) return error(404, "ResourceNotFoundException", `Function not found: ${arn}`);
    return {
      status: 200,
      headers: { "content-type": "application/json", "x-amzn-requestid": randomUUID() },
      body: JSON.stringify({ Configuration: { FunctionArn: arn, FunctionName: arn.split(":")[6] } }),
    };
  }
  const name = invokedFunction(request);
  if (request.method !== "POST" || name === undefined) {
    return error(404, "UnknownOperationException", "Unknown operation");
  }
  const fn = functions[name];
  if (fn === undefined) {
    return error(404, "ResourceNotFoundException", `Function not found: ${name}`);
  }
  const invocationType = request.headers["x-amz-invocation-type"] ?? "RequestResponse";
  if (invocationType === "Event") {
    // Lambda queues the event and answers at once.
    return { status: 202, headers: { "x-amzn-requestid": randomUUID() } };
  }
  if (invocationType !== "RequestResponse") {
    return error(400, "InvalidParameterValueException", `Unsupported invocation type ${String(invocationType)}`);
  }
  const headers = { "content-type": "application/json", "x-amzn-requestid": randomUUID(), "x-amz-executed-version": "$LATEST" };
  try {
    return { status: 200, headers, body: await fn(request.body) };
  } catch (thrown) {
    const message = thrown instanceof Error ? thrown.message : String(thrown);
    // A function error is still a 200: the invocation worked, the function did not.
    return {
      status: 200,
      headers: { ...headers, "x-amz-function-error": "Unhandled" },
      body: JSON.stringify({ errorType: "Error", errorMessage: message, trace: [] }),
    };
  }
}

function error(status: number, type: string, message: string): Reply {
  return {
    status,
    headers: { "content-type": "application/json", "x-amzn-errortype": type, "x-amzn-requestid": randomUUID() },
    body: JSON.stringify({ Type: "User", message }),
  };
}
