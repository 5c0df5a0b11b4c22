import { createServer } from "node:http";
import type { IncomingMessage, Server } from "node:http";
import type { AddressInfo } from "node:net";

/** What a test AWS endpoint received, as the SDK sent it. */
export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingMessage["headers"];
  body: string;
}

export interface TestEndpoint {
  /** `http://127.0.0.1:<port>` */
  endpoint: string;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

export type Reply = { status: number; headers?: Record<string, string>; body?: string };

/** Serves `answer` on a loopback port chosen by the system, recording every request. */
export async function startEndpoint(answer: (request: RecordedRequest) => Promise<Reply> | Reply): Promise<TestEndpoint> {
  const requests: RecordedRequest[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const request = {
        method: req.method ?? "",
        path: req.url ?? "",
        headers: req.headers,
        body: Buffer.concat(chunks).toString("utf8"),
      };
      requests.push(request);
      Promise.resolve(answer(request)).then(
        (reply) => {
          res.writeHead(reply.status, reply.headers);
          res.end(reply.body ?? "");
        },
        (error: unknown) => {
          res.writeHead(500, { "content-type": "text/plain" });
          res.end(String(error));
        },
      );
    });
  });
  return { endpoint: await listen(server), requests, close: () => close(server) };
}

/** An endpoint where nothing listens: the port was bound, then released. */
export async function closedEndpoint(): Promise<string> {
  const server = createServer();
  const endpoint = await listen(server);
  await close(server);
  return endpoint;
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function close(server: Server): Promise<void> {
  // The SDK keeps connections alive; a slow function may still hold one open.
  server.closeAllConnections();
  return new Promise((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
}

/** The region a SigV4 request was signed for: `Credential=<key>/<date>/<region>/<service>/aws4_request`. */
export function signingRegion(request: RecordedRequest): string | undefined {
  return /Credential=[^/]+\/\d{8}\/([^/]+)\//.exec(request.headers.authorization ?? "")?.[1];
}
