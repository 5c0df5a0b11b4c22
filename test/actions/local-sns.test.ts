import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { createServer } from "node:http";
import type { IncomingHttpHeaders, Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { localBackend } from "../../src/actions/local/index.js";
import type { LocalBackendOptions } from "../../src/actions/local/index.js";
import { actionFailure } from "../helpers/action-error.js";

const TOPIC = "arn:aws:sns:us-east-1:123456789012:inbound-mail";
const NOW = new Date("2024-05-01T12:34:56.789Z");
// Deliveries wait for the signing key to be made on first use (RSA 2048), slow on a busy machine.
const SIGNING = { timeout: 15_000 };
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let dir: string;
let dataDir: string;
const servers: Server[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "receiptd-local-sns-"));
  dataDir = join(dir, "data");
});

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
  await rm(dir, { recursive: true, force: true });
});

function backend(options: Partial<LocalBackendOptions> = {}) {
  return localBackend({ dataDir, sendDsn: async () => ({}), clock: () => NOW, ...options });
}

function notification(id: string, padding = 0): string {
  return JSON.stringify({
    notificationType: "Received",
    mail: { messageId: id, source: "sender@example.org", destination: ["user@example.com"] },
    receipt: { action: { type: "SNS", topicArn: TOPIC, encoding: "UTF8" } },
    content: `Subject: ${id}\r\n\r\n${"x".repeat(padding)}\r\n`,
  });
}

async function lines(topicName: string): Promise<Record<string, unknown>[]> {
  const text = await readFile(join(dataDir, "sns", `${topicName}.jsonl`), "utf8");
  expect(text.endsWith("\n")).toBe(true);
  return text
    .slice(0, -1)
    .split("\n")
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

interface Received {
  method: string | undefined;
  url: string | undefined;
  headers: IncomingHttpHeaders;
  body: string;
}

/** An HTTP subscriber on 127.0.0.1 answering every POST with status. */
async function subscriber(status = 200): Promise<{ url: string; received: Received[] }> {
  const received: Received[] = [];
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      received.push({ method: request.method, url: request.url, headers: request.headers, body: Buffer.concat(chunks).toString("utf8") });
      response.writeHead(status).end();
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/sns`, received };
}


describe("local back end: publish", () => {
  it("appends one JSON line to <dataDir>/sns/<topic name>.jsonl with the notification as given", async () => {
    const message = notification("0000000000000000000000000000000000000001");
    const detail = await backend().publish({ topicArn: TOPIC, subject: "Amazon SES Email Receipt Notification", message });
    const [line, ...rest] = await lines("inbound-mail");
    expect(rest).toEqual([]);
    expect(Object.keys(line ?? {})).toEqual(["topicArn", "subject", "message", "messageId", "timestamp"]);
    expect(line).toMatchObject({
      topicArn: TOPIC,
      subject: "Amazon SES Email Receipt Notification",
      message,
      timestamp: "2024-05-01T12:34:56.789Z",
    });
    expect(line?.messageId).toMatch(UUID);
    expect(JSON.parse(line?.message as string)).toEqual(JSON.parse(message));
    expect(detail).toMatchObject({ MessageId: line?.messageId, file: join(dataDir, "sns", "inbound-mail.jsonl"), subscribers: [] });
  });

  it("keeps every line whole under 50 concurrent publishes to one topic", async () => {
    const local = backend();
    const ids = Array.from({ length: 50 }, (_, index) => index.toString().padStart(40, "0"));
    // Large enough that unserialized writes would interleave.
    await Promise.all(ids.map((id, index) => local.publish({ topicArn: TOPIC, subject: "s", message: notification(id, 20_000 + index * 997) })));
    const written = await lines("inbound-mail");
    expect(written).toHaveLength(50);
    expect(new Set(written.map((line) => line.messageId)).size).toBe(50);
    const seen = written.map((line) => (JSON.parse(line.message as string) as { mail: { messageId: string } }).mail.messageId);
    expect(seen.sort()).toEqual(ids);
    written.forEach((line) => {
      const id = (JSON.parse(line.message as string) as { mail: { messageId: string } }).mail.messageId;
      expect(line.message).toBe(notification(id, 20_000 + Number(id) * 997));
    });
  });

  it("stores topic names up to the 256 characters SES allows, keeping the full ARN in each line", async () => {
    const local = backend();
    const arns = [249, 250, 256].map((length) => `arn:aws:sns:us-east-1:123456789012:${"t".repeat(length)}`);
    for (const topicArn of arns) await local.publish({ topicArn, subject: "s", message: "{}" });
    const files = await readdir(join(dataDir, "sns"));
    expect(files).toContain(`${"t".repeat(249)}.jsonl`);
    expect(files.every((file) => Buffer.byteLength(file) <= 255)).toBe(true);
    const stored = await Promise.all(files.map(async (file) => (await lines(file.slice(0, -".jsonl".length)))[0]?.topicArn));
    expect(stored.sort()).toEqual([...arns].sort());
  });

  it("keeps one file per topic", async () => {
    const local = backend();
    await local.publish({ topicArn: TOPIC, subject: "s", message: "{}" });
    await local.publish({ topicArn: "arn:aws:sns:eu-west-1:123456789012:other_topic-2", subject: "s", message: "{}" });
    await local.publish({ topicArn: TOPIC, subject: "s", message: "{}" });
    expect(await lines("inbound-mail")).toHaveLength(2);
    expect(await lines("other_topic-2")).toHaveLength(1);
  });

  it("POSTs the SNS HTTP notification envelope and headers to the topic's subscribers and to *", async () => {
    const forTopic = await subscriber();
    const forAll = await subscriber(204);
    const message = notification("0000000000000000000000000000000000000002");
    const detail = await backend({ snsHttpSubscriptions: { [TOPIC]: [forTopic.url], "*": [forAll.url] } }).publish({
      topicArn: TOPIC,
      subject: "Amazon SES Email Receipt Notification",
      message,
    });
    const [line] = await lines("inbound-mail");
    const messageId = line?.messageId as string;
    expect(detail).toMatchObject({ MessageId: messageId, subscribers: [forTopic.url, forAll.url] });

    for (const { received } of [forTopic, forAll]) {
      await vi.waitFor(() => expect(received).toHaveLength(1), SIGNING);
      expect(received).toHaveLength(1);
      const [post] = received;
      expect(post?.method).toBe("POST");
      expect(post?.url).toBe("/sns");
      expect(post?.headers["x-amz-sns-message-type"]).toBe("Notification");
      expect(post?.headers["x-amz-sns-message-id"]).toBe(messageId);
      expect(post?.headers["x-amz-sns-topic-arn"]).toBe(TOPIC);
      expect(post?.headers["x-amz-sns-subscription-arn"]).toMatch(new RegExp(`^${TOPIC}:[0-9a-f-]{36}$`));
      expect(post?.headers["content-type"]).toBe("text/plain; charset=UTF-8");
      const envelope = JSON.parse(post?.body ?? "") as Record<string, unknown>;
      expect(Object.keys(envelope)).toEqual([
        "Type",
        "MessageId",
        "TopicArn",
        "Subject",
        "Message",
        "Timestamp",
        "SignatureVersion",
        "Signature",
        "SigningCertURL",
        "UnsubscribeURL",
      ]);
      expect(envelope).toEqual({
        Type: "Notification",
        MessageId: messageId,
        TopicArn: TOPIC,
        Subject: "Amazon SES Email Receipt Notification",
        Message: message,
        Timestamp: "2024-05-01T12:34:56.789Z",
        SignatureVersion: "1",
        // Signed (test/actions/local-sns-signing.test.ts verifies it); no admin port, so no URLs.
        Signature: expect.stringMatching(/^[A-Za-z0-9+/]{300,}={0,2}$/),
        SigningCertURL: "",
        UnsubscribeURL: "",
      });
    }
    expect(forTopic.received[0]?.headers["x-amz-sns-subscription-arn"]).not.toBe(forAll.received[0]?.headers["x-amz-sns-subscription-arn"]);
  });

  it("leaves Subject out of the envelope when there is none, as SNS does", async () => {
    const sub = await subscriber();
    await backend({ snsHttpSubscriptions: { [TOPIC]: [sub.url] } }).publish({ topicArn: TOPIC, subject: "", message: "{}" });
    await vi.waitFor(() => expect(sub.received).toHaveLength(1), SIGNING);
    expect(JSON.parse(sub.received[0]?.body ?? "")).not.toHaveProperty("Subject");
  });

  it("does not post to subscribers of other topics", async () => {
    const sub = await subscriber();
    await backend({ snsHttpSubscriptions: { "arn:aws:sns:us-east-1:123456789012:other": [sub.url] } }).publish({
      topicArn: TOPIC,
      subject: "s",
      message: "{}",
    });
    expect(sub.received).toEqual([]);
  });

  it("retries a failing subscriber on its own, a bounded number of times, without failing the publish", async () => {
    const down = await subscriber(503);
    const failures: unknown[] = [];
    const local = backend({ snsHttpSubscriptions: { [TOPIC]: [down.url] }, snsDeliveryRetryDelaysMs: [10, 10], onBackgroundFailure: (f) => failures.push(f) });
    await expect(local.publish({ topicArn: TOPIC, subject: "s", message: "{}" })).resolves.toMatchObject({ subscribers: [down.url] });
    expect(await lines("inbound-mail")).toHaveLength(1);
    await vi.waitFor(() => expect(failures).toHaveLength(1), SIGNING);
    expect(down.received).toHaveLength(3);
    expect(failures).toEqual([{ kind: "sns-delivery", target: down.url, message: expect.stringContaining("answered 503") }]);
  });

  it("does not retry a subscriber that refuses, nor fail the publish for it", async () => {
    const refusing = await subscriber(403);
    const failures: unknown[] = [];
    const local = backend({ snsHttpSubscriptions: { [TOPIC]: [refusing.url] }, snsDeliveryRetryDelaysMs: [10], onBackgroundFailure: (f) => failures.push(f) });
    await local.publish({ topicArn: TOPIC, subject: "s", message: "{}" });
    await vi.waitFor(() => expect(failures).toHaveLength(1), SIGNING);
    expect(refusing.received).toHaveLength(1);
  });

  it("a subscriber that cannot be reached does not fail the publish", async () => {
    const sub = await subscriber();
    const server = servers.pop();
    await new Promise((resolve) => server?.close(resolve));
    const failures: { message: string }[] = [];
    const local = backend({ snsHttpSubscriptions: { "*": [sub.url] }, snsDeliveryRetryDelaysMs: [], onBackgroundFailure: (f) => failures.push(f) });
    await local.publish({ topicArn: TOPIC, subject: "s", message: "{}" });
    await vi.waitFor(() => expect(failures).toHaveLength(1), SIGNING);
    expect(failures[0]?.message).toContain(sub.url);
  });

  it.each([
    "arn:aws:sns:us-east-1:123456789012:..",
    "arn:aws:sns:us-east-1:123456789012:.",
    "arn:aws:sns:us-east-1:123456789012:",
    "arn:aws:sns:us-east-1:123456789012:a/../../x",
    "arn:aws:sns:us-east-1:123456789012:a\\b",
    "arn:aws:sns:us-east-1:123456789012:a\0b",
    "arn:aws:sns:us-east-1:123456789012:a:b",
    "arn:aws:s3:::bucket",
    "../../etc/passwd",
  ])("refuses the topic ARN %j permanently and writes nothing", async (topicArn) => {
    const error = await actionFailure(backend().publish({ topicArn, subject: "s", message: "{}" }));
    expect(error.failure).toBe("permanent");
    expect(await readdir(dir)).toEqual([]);
  });
});
