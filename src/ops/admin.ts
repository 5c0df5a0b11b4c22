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
}

export interface AdminServer {
  address(): { host: string; port: number };
  close(): Promise<void>;
}

const TEXT = "text/plain; charset=utf-8";
const PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8";

function send(request: IncomingMessage, response: ServerResponse, status: number, type: string, body: string): void {
  response.writeHead(status, {
    "content-type": type,
    "content-length": Buffer.byteLength(body),
    // A cached "ready" or a cached scrape would be a lie.
    "cache-control": "no-store",
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

async function handle(options: AdminServerOptions, request: IncomingMessage, response: ServerResponse): Promise<void> {
  if (request.method !== "GET" && request.method !== "HEAD") {
    response.setHeader("allow", "GET, HEAD");
    send(request, response, 405, TEXT, "method not allowed\n");
    return;
  }
  // Probes and scrapers sometimes add query strings; the path alone decides.
  const path = (request.url ?? "/").split("?")[0];
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
