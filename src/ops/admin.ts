import { randomUUID } from "node:crypto";
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
}

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

async function handle(options: AdminServerOptions, request: IncomingMessage, response: ServerResponse): Promise<void> {
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
