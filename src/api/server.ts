import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { ApiConfig } from "../config/schema.js";
import type { Logger } from "../ops/log.js";
import type { Metrics } from "../ops/metrics.js";
import type { StateStore } from "../store/store.js";
import { CONFIRM_PATH, confirmEmail } from "./confirm.js";
import type { Confirmation } from "./confirm.js";
import { SesError } from "./operation.js";
import type { ApiServices, Operation } from "./operation.js";
import { parseQuery } from "./query.js";
import { verifySignature } from "./sigv4.js";
import { errorXml, successXml } from "./xml.js";

export interface ApiServerOptions {
  api: ApiConfig;
  operations: readonly Operation[];
  store: StateStore;
  services: ApiServices;
  logger: Logger;
  metrics?: Metrics;
  clock?: () => Date;
}

export interface ApiServer {
  address(): { host: string; port: number };
  close(): Promise<void>;
}

const CONFIRM_PAGES: Record<Confirmation, string> = {
  verified: "<!doctype html><title>Verified</title><p>Congratulations! You have successfully verified {identity}. receiptd now accepts mail for it.</p>\n",
  "already verified": "<!doctype html><title>Verified</title><p>{identity} is already verified.</p>\n",
  invalid: "<!doctype html><title>Link not valid</title><p>This confirmation link is not valid: it has expired, was replaced by a newer one, or was never sent. Verify the address again to get a new link.</p>\n",
};

function escapeHtml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** A request body must arrive within this, so that a slow client cannot hold a call open. */
const BODY_DEADLINE_MS = 30_000;

/** The body, refused past `limit` bytes without reading on. */
function readBody(request: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(request.headers["content-length"] ?? 0);
    const tooLarge = () => new SesError("RequestEntityTooLarge", `Request body exceeds ${limit} bytes`, 413);
    if (declared > limit) return reject(tooLarge());
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => {
      request.destroy();
      reject(new SesError("RequestTimeout", "The request body did not arrive in time", 408));
    }, BODY_DEADLINE_MS);
    request.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        clearTimeout(timer);
        request.pause();
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    });
    request.on("end", () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
    request.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/**
 * The SES API on HTTP: POST / with a form body (or GET /?Action=), signed with SigV4, answered
 * in SES's XML. Every call is one log line and counted by operation and outcome.
 */
export async function startApiServer(options: ApiServerOptions): Promise<ApiServer> {
  const { api, store, services, logger, metrics } = options;
  const clock = options.clock ?? (() => new Date());
  const operations = new Map(options.operations.map((op) => [op.name, op]));

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const started = performance.now();
    const requestId = randomUUID();
    const address = request.socket.remoteAddress ?? "";
    let label = "unknown";
    const log: Record<string, unknown> = { requestId, address };
    const send = (status: number, xml: string, close = false) => {
      response.writeHead(status, {
        "content-type": "text/xml",
        "x-amzn-requestid": requestId,
        "content-length": Buffer.byteLength(xml),
        ...(close ? { connection: "close" } : {}),
      });
      response.end(xml);
    };
    try {
      const url = new URL(request.url ?? "/", "http://api");
      if (url.pathname === CONFIRM_PATH && request.method === "GET") {
        label = "ConfirmEmail";
        const outcome = await confirmEmail(store, url.searchParams, clock(), { requestId, address });
        const page = CONFIRM_PAGES[outcome].replace("{identity}", escapeHtml(url.searchParams.get("identity") ?? ""));
        response.writeHead(outcome === "invalid" ? 400 : 200, { "content-type": "text/html; charset=utf-8", "x-amzn-requestid": requestId, "content-length": Buffer.byteLength(page) });
        response.end(page);
        metrics?.apiRequests.inc({ operation: label, outcome: outcome === "invalid" ? "invalid" : "ok" });
        logger.info("api.request", { ...log, operation: label, outcome, status: outcome === "invalid" ? 400 : 200, durationMs: Math.round(performance.now() - started) });
        return;
      }
      if (request.method !== "POST" && request.method !== "GET") {
        throw new SesError("InvalidAction", `Method ${request.method} is not supported`, 405);
      }
      const body = await readBody(request, api.maxRequestBytes);
      const form = new URLSearchParams(url.search);
      const type = String(request.headers["content-type"] ?? "");
      if (request.method === "POST" && body.length > 0) {
        if (!type.startsWith("application/x-www-form-urlencoded")) {
          throw new SesError("InvalidParameterValue", `Content-Type ${type || "(none)"} is not application/x-www-form-urlencoded`);
        }
        for (const [key, value] of new URLSearchParams(body.toString("utf8"))) form.append(key, value);
      }
      const action = form.get("Action");
      const operation = action ? operations.get(action) : undefined;
      if (operation) label = operation.name;
      log.operation = action ?? null;
      const now = clock();
      const { credential, region } = await verifySignature(
        { method: request.method, path: url.pathname, query: new URLSearchParams(url.search), headers: request.headers, body },
        api.credentials,
        address,
        now,
        api.maxClockSkewMs,
      );
      Object.assign(log, { account: credential.account, region, accessKeyId: credential.accessKeyId });
      if (!action) throw new SesError("MissingAction", "Could not find operation: the request has no Action");
      if (!operation) throw new SesError("InvalidAction", `Could not find operation ${action} for version 2010-12-01`);
      for (const key of ["Action", "Version", "AWSAccessKeyId", "SignatureMethod", "SignatureVersion", "Signature", "Timestamp", "Expires", "SecurityToken"]) form.delete(key);
      const scope = { account: credential.account, region };
      const result = await operation.run(parseQuery(form), {
        caller: { accessKeyId: credential.accessKeyId, account: credential.account, region, address },
        scope,
        requestId,
        now,
        store,
        services,
      });
      send(200, successXml(operation.name, operation.hasResult, result, requestId));
      metrics?.apiRequests.inc({ operation: label, outcome: "ok" });
      logger.info("api.request", { ...log, outcome: "ok", status: 200, durationMs: Math.round(performance.now() - started) });
    } catch (caught) {
      const error =
        caught instanceof SesError ? caught : new SesError("InternalFailure", "The request processing has failed because of an unknown error, exception or failure.", 500);
      if (!(caught instanceof SesError)) logger.error("api.internal_error", { ...log, error: caught });
      // A refused body is not read on: the connection closes after the answer.
      send(error.status, errorXml(error, requestId), error.status === 413 || error.status === 408);
      metrics?.apiRequests.inc({ operation: label, outcome: error.code });
      logger.info("api.request", {
        ...log,
        outcome: "error",
        errorCode: error.code,
        status: error.status,
        durationMs: Math.round(performance.now() - started),
      });
    } finally {
      metrics?.apiSeconds.observe({ operation: label }, (performance.now() - started) / 1000);
    }
  };

  const server = createServer((request, response) => void handle(request, response));
  server.headersTimeout = BODY_DEADLINE_MS;
  server.requestTimeout = BODY_DEADLINE_MS * 2;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(api.port, api.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const bound = server.address() as AddressInfo;
  logger.info("api.listening", { host: api.host, port: bound.port, keys: api.credentials.length });
  return {
    address: () => ({ host: api.host, port: bound.port }),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
