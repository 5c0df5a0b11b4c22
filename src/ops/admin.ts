import { randomUUID, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "./log.js";
import type { Registry } from "./metrics.js";

export type Readiness = boolean | { ready: boolean; reason?: string };

export interface AdminServerOptions {
  /** Default 127.0.0.1: metrics and health are for the operator's scraper, not for the internet. */
  host?: string;
  /** 0 picks a free port; `address()` tells which. */
  port: number;
  metrics: Pick<Registry, "render">;
  /** Listeners up, spool open, rule set loaded. A throw counts as not ready, with its message as the reason. */
  ready: () => Readiness;
  /** Told about server errors after start (e.g. EMFILE on accept), which must not end the daemon. */
  logger?: Logger;
  /** The local SNS, whose envelopes' SigningCertURL and UnsubscribeURL point here. */
  sns?: SnsEndpoints;
  /** `POST /messages/requeue`: dead letters back into processing (`receiptd messages requeue`). */
  requeue?: (request: RequeueRequest) => Promise<RequeueResult>;
  /** What a requeue must send as `Authorization: Bearer <token>`; without it, loopback callers only. */
  token?: string;
}

export interface RequeueRequest {
  /** These dead letters; or, with `dead`, every dead letter (received since `since`, if given). */
  ids?: string[];
  dead?: boolean;
  since?: string;
  /** Evaluate under the active rule set instead of each message's own snapshot. */
  activeRuleSet?: boolean;
}

export interface RequeueResult {
  requeued: string[];
  refused: { id: string; reason: string }[];
}

/** A requeue body is a small JSON object; anything larger is not one. */
const MAX_REQUEUE_BODY = 1024 * 1024;

/** What the admin port serves of the local SNS (docs/behaviour.md §11). */
export interface SnsEndpoints {
  signingIdentity(): Promise<{ certificateName: string; certificatePem: string }>;
  unsubscribe(subscriptionArn: string): Promise<"unsubscribed" | "unknown">;
}

export interface AdminServer {
  address(): { host: string; port: number };
  close(): Promise<void>;
}

const TEXT = "text/plain; charset=utf-8";
const PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8";

const XML = "text/xml";
const SNS_XMLNS = "http://sns.amazonaws.com/doc/2010-03-31/";

function send(request: IncomingMessage, response: ServerResponse, status: number, type: string, body: string, cache = "no-store"): void {
  response.writeHead(status, {
    "content-type": type,
    "content-length": Buffer.byteLength(body),
    // A cached "ready" or a cached scrape would be a lie.
    "cache-control": cache,
  });
  response.end(request.method === "HEAD" ? undefined : body);
}

function readiness(ready: () => Readiness): { ready: boolean; reason: string } {
  try {
    const answer = ready();
    if (typeof answer === "boolean") return { ready: answer, reason: answer ? "" : "not ready" };
    return { ready: answer.ready, reason: answer.reason ?? (answer.ready ? "" : "not ready") };
  } catch (error) {
    return { ready: false, reason: `readiness check failed: ${(error as Error).message}` };
  }
}

function snsError(request: IncomingMessage, response: ServerResponse, status: number, code: string, message: string): void {
  const body =
    `<ErrorResponse xmlns="${SNS_XMLNS}">\n  <Error>\n    <Type>Sender</Type>\n    <Code>${code}</Code>\n` +
    `    <Message>${escapeXml(message)}</Message>\n  </Error>\n  <RequestId>${randomUUID()}</RequestId>\n</ErrorResponse>\n`;
  send(request, response, status, XML, body);
}

const escapeXml = (text: string) =>
  text.replace(/[<>&"']/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" })[c] ?? c);

/** SNS's query API Unsubscribe, as fetched from an envelope's UnsubscribeURL; answers SNS's XML. */
async function unsubscribe(sns: SnsEndpoints, request: IncomingMessage, response: ServerResponse, query: URLSearchParams): Promise<void> {
  if (query.get("Action") !== "Unsubscribe") {
    snsError(request, response, 400, "InvalidAction", `The action ${query.get("Action") ?? ""} is not valid for this endpoint.`);
    return;
  }
  // Only a GET unsubscribes: a HEAD (a link checker, say) must not.
  if (request.method !== "GET") {
    response.setHeader("allow", "GET");
    send(request, response, 405, TEXT, "method not allowed\n");
    return;
  }
  const arn = query.get("SubscriptionArn");
  if (!arn) {
    snsError(request, response, 400, "InvalidParameter", "Invalid parameter: SubscriptionArn is required");
    return;
  }
  if ((await sns.unsubscribe(arn)) === "unknown") {
    snsError(request, response, 404, "NotFound", "Subscription does not exist");
    return;
  }
  const body = `<UnsubscribeResponse xmlns="${SNS_XMLNS}">\n  <ResponseMetadata>\n    <RequestId>${randomUUID()}</RequestId>\n  </ResponseMetadata>\n</UnsubscribeResponse>\n`;
  send(request, response, 200, XML, body);
}

const LOOPBACK = /^(127\.|::1$|::ffff:127\.)/;

function readJson(request: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_REQUEUE_BODY) {
        request.destroy();
        reject(new Error("request body too large"));
      } else chunks.push(chunk);
    });
    request.on("end", () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}"));
      } catch (error) {
        reject(error);
      }
    });
    request.on("error", reject);
  });
}

function checkRequeueRequest(body: unknown): RequeueRequest | string {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return "the body must be a JSON object";
  const { ids, dead, since, activeRuleSet } = body as Record<string, unknown>;
  if (ids !== undefined && !(Array.isArray(ids) && ids.every((id) => typeof id === "string"))) return "ids: expected a list of message IDs";
  if (dead !== undefined && typeof dead !== "boolean") return "dead: expected true or false";
  if (since !== undefined && (typeof since !== "string" || Number.isNaN(Date.parse(since)))) return "since: expected an ISO 8601 time";
  if (activeRuleSet !== undefined && typeof activeRuleSet !== "boolean") return "activeRuleSet: expected true or false";
  if ((ids === undefined || ids.length === 0) !== (dead === true)) return "give either ids or dead: true";
  return body as RequeueRequest;
}

/** POST /messages/requeue: authenticated by the token when one is configured, else by a loopback peer. */
async function requeue(options: AdminServerOptions, request: IncomingMessage, response: ServerResponse): Promise<void> {
  const { token } = options;
  const presented = /^Bearer (.+)$/.exec(String(request.headers.authorization ?? ""))?.[1];
  const allowed = token !== undefined ? presented !== undefined && sameSecret(presented, token) : LOOPBACK.test(request.socket.remoteAddress ?? "");
  if (!allowed || !options.requeue) {
    send(request, response, allowed ? 404 : 403, TEXT, allowed ? "not found\n" : "forbidden: requeue needs a loopback address, or admin.token as a Bearer token\n");
    return;
  }
  let checked: RequeueRequest | string;
  try {
    checked = checkRequeueRequest(await readJson(request));
  } catch (error) {
    checked = `not JSON: ${(error as Error).message}`;
  }
  if (typeof checked === "string") {
    send(request, response, 400, TEXT, `${checked}\n`);
    return;
  }
  send(request, response, 200, "application/json", `${JSON.stringify(await options.requeue(checked))}\n`);
}

function sameSecret(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

async function handle(options: AdminServerOptions, request: IncomingMessage, response: ServerResponse): Promise<void> {
  if (request.method === "POST" && (request.url ?? "").split("?")[0] === "/messages/requeue") {
    await requeue(options, request, response);
    return;
  }
  if (request.method !== "GET" && request.method !== "HEAD") {
    response.setHeader("allow", "GET, HEAD");
    send(request, response, 405, TEXT, "method not allowed\n");
    return;
  }
  // Probes and scrapers sometimes add query strings; the path alone decides.
  const [path, search] = (request.url ?? "/").split("?");
  const { sns } = options;
  if (sns && path === "/sns/") {
    await unsubscribe(sns, request, response, new URLSearchParams(search));
    return;
  }
  if (sns && path?.startsWith("/sns/") && path.endsWith(".pem")) {
    const identity = await sns.signingIdentity();
    // The name carries the certificate's hash, so what it names never changes.
    if (path === `/sns/${identity.certificateName}`) send(request, response, 200, "application/x-pem-file", identity.certificatePem, "public, max-age=86400");
    else send(request, response, 404, TEXT, "not found\n");
    return;
  }
  switch (path) {
    case "/healthz":
      send(request, response, 200, TEXT, "ok\n");
      return;
    case "/readyz": {
      const state = readiness(options.ready);
      if (state.ready) send(request, response, 200, TEXT, "ready\n");
      else send(request, response, 503, TEXT, `${state.reason}\n`);
      return;
    }
    case "/metrics": {
      let text: string;
      try {
        text = await options.metrics.render();
      } catch (error) {
        send(request, response, 500, TEXT, `cannot render metrics: ${(error as Error).message}\n`);
        return;
      }
      send(request, response, 200, PROMETHEUS_TEXT, text);
      return;
    }
    default:
      send(request, response, 404, TEXT, "not found\n");
  }
}

export function startAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const server = createServer((request, response) => {
    handle(options, request, response).catch((error: unknown) => {
      options.logger?.warn("admin.request_failed", { url: request.url, error });
      response.destroy();
    });
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host ?? "127.0.0.1", () => {
      server.off("error", reject);
      server.on("error", (error) => options.logger?.warn("admin.server_error", { error }));
      resolve({
        address() {
          const info = server.address() as AddressInfo;
          return { host: info.address, port: info.port };
        },
        close() {
          return new Promise<void>((done, fail) => {
            server.close((error) => (error ? fail(error) : done()));
            // Scrapers keep connections alive; waiting for them to go idle would stall shutdown.
            server.closeAllConnections();
          });
        },
      });
    });
  });
}
