import { randomBytes, randomUUID } from "node:crypto";
import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { inspect } from "node:util";
import { ActionError } from "../backend.js";
import type { InvokeRequest } from "../backend.js";
import type { LineAppender } from "./files.js";
import type { BackgroundFailure } from "./sns.js";
import { functionName, resolveInside } from "./paths.js";

type Callback = (error?: unknown, result?: unknown) => void;
type Handler = (event: unknown, context: LambdaContext, callback: Callback) => unknown;

/** The fields of the Node.js Lambda runtime's context object that handlers read. */
export interface LambdaContext {
  functionName: string;
  functionVersion: string;
  invokedFunctionArn: string;
  memoryLimitInMB: string;
  awsRequestId: string;
  logGroupName: string;
  logStreamName: string;
  getRemainingTimeInMillis(): number;
  callbackWaitsForEmptyEventLoop: boolean;
}

/** Whether a handler is configured for the function (by its ARN, or its ARN without qualifier). */
export function hasLambdaHandler(handlers: Readonly<Record<string, string>>, functionArn: string): boolean {
  try {
    return handlers[functionArn] !== undefined || handlers[functionName(functionArn).unqualifiedArn] !== undefined;
  } catch {
    return false;
  }
}

export interface LambdaOptions {
  root: string;
  lines: LineAppender;
  handlers: Record<string, string>;
  baseDir: string;
  timeoutMs: number;
  clock: () => Date;
  onBackgroundFailure: (failure: BackgroundFailure) => void;
}

/** Lambda's error payload shape, so that the trace reads like a Lambda function error. */
interface FunctionError {
  errorType: string;
  errorMessage: string;
}

type Outcome = { ok: true; result: unknown } | { ok: false; error: FunctionError };

function functionError(error: unknown): FunctionError {
  if (error instanceof Error) return { errorType: error.name, errorMessage: error.message };
  // Callback-style handlers may fail with a bare string, as Lambda allows.
  return { errorType: "Error", errorMessage: typeof error === "string" ? error : inspect(error) };
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null)?.then === "function";
}

/**
 * Settles with the handler's result as the Node.js runtime takes it: the promise an async
 * handler returns, or the callback of a callback-style one; a plain return value of a
 * handler that takes no callback counts as its result.
 */
function call(handler: Handler, event: unknown, context: LambdaContext): Promise<unknown> {
  return new Promise((resolvePromise, reject) => {
    const callback: Callback = (error, result) => (error === undefined || error === null ? resolvePromise(result) : reject(error));
    const returned = handler(event, context, callback);
    if (isThenable(returned)) returned.then(resolvePromise, reject);
    else if (handler.length < 3) resolvePromise(returned);
  });
}

/** The handler's result as it would come back over the Invoke API: JSON, with undefined as null. */
function asJson(value: unknown): unknown {
  const json = JSON.stringify(value);
  return json === undefined ? null : (JSON.parse(json) as unknown);
}

export function lambdaInvoker(options: LambdaOptions): (request: InvokeRequest) => Promise<{ result: unknown; detail: Record<string, unknown> }> {
  const modules = new Map<string, Promise<Handler>>();

  const load = (modulePath: string): Promise<Handler> => {
    const path = isAbsolute(modulePath) ? modulePath : resolve(options.baseDir, modulePath);
    let loading = modules.get(path);
    if (loading === undefined) {
      loading = import(pathToFileURL(path).href).then((module: Record<string, unknown>) => {
        // A CommonJS module's exports arrive as the default export.
        const handler = module.handler ?? (module.default as Record<string, unknown> | undefined)?.handler;
        if (typeof handler !== "function") throw new Error(`${path} does not export a handler function`);
        return handler as Handler;
      });
      // A module that failed to load is tried again next time, in case it has been fixed.
      loading.catch(() => modules.delete(path));
      modules.set(path, loading);
    }
    return loading.catch((error: unknown) => {
      throw new ActionError("permanent", `cannot load the Lambda handler module ${path}: ${(error as Error).message}`, { cause: error });
    });
  };

  const run = async (handler: Handler, event: unknown, context: LambdaContext): Promise<Outcome> => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        // The handler cannot be stopped in-process; whatever it does later is ignored.
        const error = new Error(`Task timed out after ${(options.timeoutMs / 1000).toFixed(2)} seconds`);
        error.name = "TimeoutError";
        reject(error);
      }, options.timeoutMs);
    });
    try {
      return { ok: true, result: asJson(await Promise.race([call(handler, event, context), timeout])) };
    } catch (error) {
      return { ok: false, error: functionError(error) };
    } finally {
      clearTimeout(timer);
    }
  };

  return async (request) => {
    const { name, unqualifiedArn } = functionName(request.functionArn);
    const log = resolveInside(options.root, [`${name}.jsonl`], "function name", request.functionArn);
    const modulePath = options.handlers[request.functionArn] ?? options.handlers[unqualifiedArn];
    if (modulePath === undefined) {
      throw new ActionError(
        "permanent",
        `no Lambda handler is configured for ${request.functionArn}: set local.lambdaHandlers["${unqualifiedArn}"] to the path of a module exporting handler(event, context)`,
      );
    }
    let event: unknown;
    try {
      event = JSON.parse(request.payload);
    } catch (error) {
      throw new ActionError("permanent", `Lambda payload for ${request.functionArn} is not JSON`, { cause: error });
    }
    const handler = await load(modulePath);

    const started = options.clock();
    const deadline = Date.now() + options.timeoutMs;
    const awsRequestId = randomUUID();
    const day = started.toISOString().slice(0, 10).replaceAll("-", "/");
    const context: LambdaContext = {
      functionName: name,
      functionVersion: "$LATEST",
      invokedFunctionArn: request.functionArn,
      memoryLimitInMB: "128",
      awsRequestId,
      logGroupName: `/aws/lambda/${name}`,
      logStreamName: `${day}/[$LATEST]${randomBytes(16).toString("hex")}`,
      getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
      callbackWaitsForEmptyEventLoop: true,
    };
    // Event invocations are awaited too, so that the next action keeps its order; but Lambda
    // accepts them before the function runs, so their failures cannot fail the action.
    const outcome = await run(handler, event, context);
    await options.lines.append(log, {
      functionArn: request.functionArn,
      invocationType: request.invocationType,
      event,
      ...(outcome.ok ? { result: outcome.result } : { error: outcome.error }),
      timestamp: started.toISOString(),
    });
    const detail = { functionArn: request.functionArn, awsRequestId, log };
    if (request.invocationType === "Event") {
      if (!outcome.ok) {
        const message = `Lambda ${request.functionArn} failed: ${outcome.error.errorType}: ${outcome.error.errorMessage}`;
        options.onBackgroundFailure({ kind: "lambda-event", target: request.functionArn, message });
      }
      return { result: null, detail: { StatusCode: 202, ...detail } };
    }
    if (!outcome.ok) {
      // SES retries a failed synchronous invocation.
      throw new ActionError("transient", `Lambda ${request.functionArn} failed: ${outcome.error.errorType}: ${outcome.error.errorMessage}`);
    }
    return { result: outcome.result, detail: { StatusCode: 200, ...detail } };
  };
}
