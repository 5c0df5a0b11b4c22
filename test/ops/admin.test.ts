import { request } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { startAdminServer } from "../../src/ops/admin.js";
import type { AdminServer, Readiness } from "../../src/ops/admin.js";
import { createMetrics } from "../../src/ops/metrics.js";

let server: AdminServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

interface Reply {
  status: number;
  type: string | undefined;
  body: string;
  headers: Record<string, unknown>;
}

function call(method: string, path: string): Promise<Reply> {
  const { host, port } = server!.address();
  return new Promise((resolve, reject) => {
    const req = request({ host, port, method, path }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8");
        resolve({ status: res.statusCode ?? 0, type: res.headers["content-type"], body, headers: res.headers });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

describe("admin HTTP server", () => {
  it("binds to loopback by default and answers /healthz", async () => {
    server = await startAdminServer({ port: 0, metrics: createMetrics(), ready: () => true });
    const { host, port } = server.address();
    expect(host).toBe("127.0.0.1");
    expect(port).toBeGreaterThan(0);
    const health = await call("GET", "/healthz");
    expect(health).toMatchObject({ status: 200, body: "ok\n" });
    expect(health.headers["cache-control"]).toBe("no-store");
  });

  it("/readyz is 503 with the reason until ready, then 200", async () => {
    let state: Readiness = { ready: false, reason: "spool not open" };
    server = await startAdminServer({ host: "127.0.0.1", port: 0, metrics: createMetrics(), ready: () => state });
    expect(await call("GET", "/readyz")).toMatchObject({ status: 503, body: "spool not open\n" });
    state = false;
    expect(await call("GET", "/readyz")).toMatchObject({ status: 503, body: "not ready\n" });
    state = { ready: true };
    expect(await call("GET", "/readyz")).toMatchObject({ status: 200, body: "ready\n" });
    state = true;
    expect(await call("GET", "/readyz?verbose=1")).toMatchObject({ status: 200 });
  });

  it("/readyz is 503 when the readiness check throws", async () => {
    server = await startAdminServer({
      port: 0,
      metrics: createMetrics(),
      ready: () => {
        throw new Error("listeners not started");
      },
    });
    expect(await call("GET", "/readyz")).toMatchObject({
      status: 503,
      body: "readiness check failed: listeners not started\n",
    });
  });

  it("/metrics serves the Prometheus text format", async () => {
    const metrics = createMetrics();
    metrics.smtpConnections.inc();
    metrics.spoolDepth.onScrape((gauge) => gauge.set(4));
    server = await startAdminServer({ port: 0, metrics, ready: () => true });
    const response = await call("GET", "/metrics");
    expect(response.status).toBe(200);
    expect(response.type).toBe("text/plain; version=0.0.4; charset=utf-8");
    expect(response.body).toContain("# TYPE receiptd_smtp_connections_total counter\nreceiptd_smtp_connections_total 1\n");
    expect(response.body).toContain("\nreceiptd_spool_depth 4\n");
  });

  it("/metrics is a 500 when rendering fails", async () => {
    const metrics = { render: () => Promise.reject(new Error("broken")) };
    server = await startAdminServer({ port: 0, metrics, ready: () => true });
    expect(await call("GET", "/metrics")).toMatchObject({ status: 500, body: "cannot render metrics: broken\n" });
  });

  it("HEAD gets the headers without a body; other methods 405; other paths 404", async () => {
    server = await startAdminServer({ port: 0, metrics: createMetrics(), ready: () => true });
    const head = await call("HEAD", "/metrics");
    expect(head.status).toBe(200);
    expect(head.body).toBe("");
    expect(Number(head.headers["content-length"])).toBeGreaterThan(0);
    const post = await call("POST", "/metrics");
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe("GET, HEAD");
    expect((await call("GET", "/")).status).toBe(404);
    expect((await call("GET", "/metrics/extra")).status).toBe(404);
  });

  it("rejects when the port is taken, and close() does not wait for idle keep-alive clients", async () => {
    server = await startAdminServer({ port: 0, metrics: createMetrics(), ready: () => true });
    await expect(startAdminServer({ port: server.address().port, metrics: createMetrics(), ready: () => true })).rejects.toThrow(
      /EADDRINUSE/,
    );
    const response = await fetch(`http://127.0.0.1:${server.address().port}/healthz`, { keepalive: true });
    expect(await response.text()).toBe("ok\n");
    const started = Date.now();
    await server.close();
    server = undefined;
    expect(Date.now() - started).toBeLessThan(1000);
  });
});

describe("admin HTTP server: the local SNS's certificate and Unsubscribe", () => {
  const identity = { certificateName: "SimpleNotificationService-0123456789abcdef0123456789abcdef.pem", certificatePem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" };
  const unsubscribed: string[] = [];
  const sns = {
    signingIdentity: async () => identity,
    unsubscribe: async (arn: string) => {
      if (!arn.endsWith(":known")) return "unknown" as const;
      unsubscribed.push(arn);
      return "unsubscribed" as const;
    },
  };

  it("serves the certificate under its own name only, cacheable", async () => {
    server = await startAdminServer({ port: 0, metrics: createMetrics(), ready: () => true, sns });
    const certificate = await call("GET", `/sns/${identity.certificateName}`);
    expect(certificate).toMatchObject({ status: 200, type: "application/x-pem-file", body: identity.certificatePem });
    expect(certificate.headers["cache-control"]).toBe("public, max-age=86400");
    expect((await call("HEAD", `/sns/${identity.certificateName}`)).status).toBe(200);
    expect((await call("GET", "/sns/SimpleNotificationService-other.pem")).status).toBe(404);
  });

  it("answers Unsubscribe with SNS's XML: done, NotFound, InvalidAction, InvalidParameter", async () => {
    server = await startAdminServer({ port: 0, metrics: createMetrics(), ready: () => true, sns });
    const arn = "arn:aws:sns:us-east-1:123456789012:topic:known";
    const done = await call("GET", `/sns/?Action=Unsubscribe&SubscriptionArn=${encodeURIComponent(arn)}`);
    expect(done).toMatchObject({ status: 200, type: "text/xml" });
    expect(done.body).toContain("<UnsubscribeResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\">");
    expect(unsubscribed).toEqual([arn]);
    const unknown = await call("GET", "/sns/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:us-east-1:123456789012:topic:x");
    expect(unknown).toMatchObject({ status: 404, type: "text/xml" });
    expect(unknown.body).toMatch(/<Type>Sender<\/Type>\s*<Code>NotFound<\/Code>/);
    expect((await call("GET", "/sns/?Action=Publish")).body).toContain("<Code>InvalidAction</Code>");
    expect((await call("GET", "/sns/?Action=Unsubscribe")).body).toContain("<Code>InvalidParameter</Code>");
    expect((await call("HEAD", `/sns/?Action=Unsubscribe&SubscriptionArn=${encodeURIComponent(arn)}`)).status).toBe(405);
    expect(unsubscribed).toEqual([arn]);
  });

  it("serves none of it without a local SNS", async () => {
    server = await startAdminServer({ port: 0, metrics: createMetrics(), ready: () => true });
    expect((await call("GET", `/sns/${identity.certificateName}`)).status).toBe(404);
    expect((await call("GET", "/sns/?Action=Unsubscribe&SubscriptionArn=a")).status).toBe(404);
  });
});

describe("POST /messages/requeue", () => {
  const post = async (body: string, headers: Record<string, string> = {}) => {
    const { host, port } = server!.address();
    const response = await fetch(`http://${host}:${port}/messages/requeue`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });
    return { status: response.status, body: await response.text() };
  };
  const asked: unknown[] = [];
  const requeue = async (request: unknown) => {
    asked.push(request);
    return { requeued: ["x"], refused: [] };
  };

  it("takes a requeue from loopback without a token, and checks the request", async () => {
    server = await startAdminServer({ port: 0, metrics: createMetrics(), ready: () => true, requeue });
    expect(await post(JSON.stringify({ ids: ["a"] }))).toEqual({ status: 200, body: '{"requeued":["x"],"refused":[]}\n' });
    expect(asked.at(-1)).toEqual({ ids: ["a"] });
    expect(await post(JSON.stringify({ ids: ["a"], dead: true }))).toEqual({ status: 400, body: "give either ids or dead: true\n" });
    expect(await post(JSON.stringify({ dead: true, since: "yesterday" }))).toEqual({ status: 400, body: "since: expected an ISO 8601 time\n" });
    expect((await post("{not json")).status).toBe(400);
  });

  it("with a token configured, wants it as a Bearer token", async () => {
    server = await startAdminServer({ port: 0, metrics: createMetrics(), ready: () => true, requeue, token: "a-long-admin-token" });
    expect((await post(JSON.stringify({ dead: true }))).status).toBe(403);
    expect((await post(JSON.stringify({ dead: true }), { authorization: "Bearer wrong-token-of-length" })).status).toBe(403);
    expect((await post(JSON.stringify({ dead: true }), { authorization: "Bearer a-long-admin-token" })).status).toBe(200);
  });
});
