import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { InvokeRequest } from "../../src/actions/backend.js";
import { localBackend } from "../../src/actions/local/index.js";
import type { LocalBackendOptions } from "../../src/actions/local/index.js";
import { actionFailure } from "../helpers/action-error.js";

const handlersDir = fileURLToPath(new URL("../fixtures/handlers/", import.meta.url));
const fixture = (name: string): string => join(handlersDir, name);
const ARN = "arn:aws:lambda:us-east-1:123456789012:function:process-mail";
const NOW = new Date("2024-05-01T12:34:56.789Z");

const event = {
  Records: [
    {
      eventSource: "aws:ses",
      eventVersion: "1.0",
      ses: {
        mail: { messageId: "0123456789abcdefghijklmnopqrstuv01234567", source: "sender@example.org" },
        receipt: { action: { type: "Lambda", functionArn: ARN, invocationType: "RequestResponse" } },
      },
    },
  ],
};
const payload = JSON.stringify(event);

let dir: string;
let dataDir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "receiptd-local-lambda-"));
  dataDir = join(dir, "data");
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function backend(handlers: Record<string, string>, options: Partial<LocalBackendOptions> = {}) {
  return localBackend({ dataDir, lambdaHandlers: handlers, sendDsn: async () => ({}), clock: () => NOW, ...options });
}

function request(invocationType: InvokeRequest["invocationType"] = "RequestResponse", functionArn = ARN): InvokeRequest {
  return { functionArn, invocationType, payload };
}

async function trace(name = "process-mail"): Promise<Record<string, unknown>[]> {
  const text = await readFile(join(dataDir, "lambda", `${name}.jsonl`), "utf8");
  return text
    .trimEnd()
    .split("\n")
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}


describe("local back end: invoke", () => {
  it("calls an async handler with the event and a Lambda-like context, and returns its result for RequestResponse", async () => {
    const { result, detail } = await backend({ [ARN]: fixture("async.mjs") }).invoke(request());
    expect(result).toMatchObject({
      disposition: "STOP_RULE",
      messageId: "0123456789abcdefghijklmnopqrstuv01234567",
      context: {
        functionName: "process-mail",
        functionVersion: "$LATEST",
        invokedFunctionArn: ARN,
        memoryLimitInMB: "128",
        logGroupName: "/aws/lambda/process-mail",
        callbackWaitsForEmptyEventLoop: true,
      },
    });
    const context = (result as { context: { awsRequestId: string; logStreamName: string; remaining: number } }).context;
    expect(context.awsRequestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(context.logStreamName).toMatch(/^2024\/05\/01\/\[\$LATEST\][0-9a-f]{32}$/);
    expect(context.remaining).toBeGreaterThan(29_000);
    expect(context.remaining).toBeLessThanOrEqual(30_000);
    expect(detail).toEqual({
      StatusCode: 200,
      functionArn: ARN,
      awsRequestId: context.awsRequestId,
      log: join(dataDir, "lambda", "process-mail.jsonl"),
    });
    expect(await trace()).toEqual([
      { functionArn: ARN, invocationType: "RequestResponse", event, result, timestamp: "2024-05-01T12:34:56.789Z" },
    ]);
  });

  it("takes a callback-style handler's result from its callback", async () => {
    const { result } = await backend({ [ARN]: fixture("callback.mjs") }).invoke(request());
    expect(result).toEqual({ disposition: "STOP_RULE_SET", source: "sender@example.org" });
  });

  it("runs an Event invocation to completion but returns no result", async () => {
    const { result, detail } = await backend({ [ARN]: fixture("async.mjs") }).invoke(request("Event"));
    expect(result).toBeNull();
    expect(detail.StatusCode).toBe(202);
    const [line] = await trace();
    expect(line).toMatchObject({ invocationType: "Event", result: { disposition: "STOP_RULE" } });
  });

  it("loads a module once, and returns undefined as null", async () => {
    const local = backend({ [ARN]: fixture("no-result.mjs") });
    expect((await local.invoke(request())).result).toBeNull();
    expect((await local.invoke(request())).result).toEqual({ calls: 2 });
    expect((await trace()).map((line) => line.result)).toEqual([null, { calls: 2 }]);
  });

  it("loads a CommonJS handler", async () => {
    const { result } = await backend({ [ARN]: fixture("commonjs.cjs") }).invoke(request());
    expect(result).toEqual({ records: 1 });
  });

  it("resolves relative handler paths against baseDir", async () => {
    const { result } = await backend({ [ARN]: "handlers/callback.mjs" }, { baseDir: join(handlersDir, "..") }).invoke(request());
    expect(result).toMatchObject({ disposition: "STOP_RULE_SET" });
  });

  it("finds the handler of a qualified ARN under the unqualified one, and an exact qualified key first", async () => {
    const local = backend({ [ARN]: fixture("callback.mjs"), [`${ARN}:live`]: fixture("async.mjs") });
    expect((await local.invoke(request("RequestResponse", `${ARN}:7`))).result).toMatchObject({ disposition: "STOP_RULE_SET" });
    const qualified = await local.invoke(request("RequestResponse", `${ARN}:live`));
    expect(qualified.result).toMatchObject({ disposition: "STOP_RULE", context: { invokedFunctionArn: `${ARN}:live` } });
  });

  it("accepts an Event invocation whose handler throws, as Lambda does, reporting the error aside and in the trace", async () => {
    const failures: unknown[] = [];
    const { detail } = await backend({ [ARN]: fixture("throwing.mjs") }, { onBackgroundFailure: (f) => failures.push(f) }).invoke(request("Event"));
    expect(detail).toMatchObject({ StatusCode: 202 });
    expect(failures).toEqual([{ kind: "lambda-event", target: ARN, message: expect.stringContaining("TypeError: cannot read the message") }]);
    expect(await trace()).toEqual([
      {
        functionArn: ARN,
        invocationType: "Event",
        event,
        error: { errorType: "TypeError", errorMessage: "cannot read the message" },
        timestamp: "2024-05-01T12:34:56.789Z",
      },
    ]);
  });

  it("fails a RequestResponse invocation transiently when the handler throws", async () => {
    const error = await actionFailure(backend({ [ARN]: fixture("throwing.mjs") }).invoke(request()));
    expect(error.failure).toBe("transient");
    expect(error.message).toContain("TypeError: cannot read the message");
  });

  it("fails transiently when a callback-style handler reports an error", async () => {
    const error = await actionFailure(backend({ [ARN]: fixture("callback-error.mjs") }).invoke(request()));
    expect(error.failure).toBe("transient");
    expect(error.message).toContain("mailbox full");
  });

  it("fails transiently when the handler outlives the timeout", async () => {
    const started = Date.now();
    const error = await actionFailure(backend({ [ARN]: fixture("slow.mjs") }, { requestResponseTimeoutMs: 100 }).invoke(request()));
    expect(Date.now() - started).toBeLessThan(1_500);
    expect(error.failure).toBe("transient");
    expect(error.message).toContain("Task timed out after 0.10 seconds");
    const [line] = await trace();
    expect(line?.error).toEqual({ errorType: "TimeoutError", errorMessage: "Task timed out after 0.10 seconds" });
  });

  it("fails permanently, naming the ARN and the setting, when no handler is configured", async () => {
    const error = await actionFailure(backend({}).invoke(request("RequestResponse", `${ARN}:3`)));
    expect(error.failure).toBe("permanent");
    expect(error.message).toContain(`${ARN}:3`);
    expect(error.message).toContain(`local.lambdaHandlers["${ARN}"]`);
    expect(await readdir(dir)).toEqual([]);
  });

  it("fails permanently when the module does not export a handler, or does not exist", async () => {
    const noHandler = await actionFailure(backend({ [ARN]: fixture("no-handler.mjs") }).invoke(request()));
    expect(noHandler.failure).toBe("permanent");
    expect(noHandler.message).toContain("does not export a handler function");
    const missing = await actionFailure(backend({ [ARN]: fixture("missing.mjs") }).invoke(request()));
    expect(missing.failure).toBe("permanent");
    expect(missing.message).toContain("missing.mjs");
  });

  it("fails permanently when the payload is not JSON", async () => {
    const error = await actionFailure(backend({ [ARN]: fixture("async.mjs") }).invoke({ functionArn: ARN, invocationType: "Event", payload: "{" }));
    expect(error.failure).toBe("permanent");
  });

  it.each([
    "arn:aws:lambda:us-east-1:123456789012:function:..",
    "arn:aws:lambda:us-east-1:123456789012:function:.",
    "arn:aws:lambda:us-east-1:123456789012:function:",
    "arn:aws:lambda:us-east-1:123456789012:function:a\\b",
    "arn:aws:lambda:us-east-1:123456789012:function:a/../../x",
    "arn:aws:lambda:us-east-1:123456789012:layer:x",
    "arn:aws:lambda:us-east-1:123456789012:function:a:b:c",
    "../../etc/passwd",
  ])("refuses the function ARN %j permanently and writes nothing", async (functionArn) => {
    const error = await actionFailure(backend({ [functionArn]: fixture("async.mjs") }).invoke(request("Event", functionArn)));
    expect(error.failure).toBe("permanent");
    expect(await readdir(dir)).toEqual([]);
  });
});
