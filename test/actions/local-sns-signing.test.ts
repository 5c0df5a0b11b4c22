// Signed local SNS envelopes, checked the way SNS consumers check them: the certificate fetched
// from SigningCertURL (served by the real admin server), the signature verified with
// node:crypto following AWS's documented procedure, and with AWS's own sns-validator.
import { createVerify, X509Certificate } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import type { Server } from "node:http";
import https from "node:https";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { localBackend } from "../../src/actions/local/index.js";
import type { LocalBackendOptions } from "../../src/actions/local/index.js";
import { startAdminServer } from "../../src/ops/admin.js";
import type { AdminServer } from "../../src/ops/admin.js";
import { awsStringToSign, startSubscriber } from "../helpers/sns-subscriber.js";

interface SnsValidator {
  validate(message: Record<string, string>, callback: (error: Error | null) => void): void;
}
const MessageValidator = createRequire(import.meta.url)("sns-validator") as new (hostPattern?: RegExp) => SnsValidator;

const TOPIC = "arn:aws:sns:us-east-1:123456789012:inbound-mail";
const MESSAGE = JSON.stringify({ notificationType: "Received", content: "Subject: héllo\r\n\r\nbody\r\n" });

let dir: string;
const servers: Server[] = [];
const admins: AdminServer[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "receiptd-sns-signing-"));
});

afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(admins.splice(0).map((admin) => admin.close()));
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
  await rm(dir, { recursive: true, force: true });
});

/** The first delivery waits for the key to be made (RSA 2048), which takes a while on a busy machine. */
async function arrived(envelopes: unknown[], count: number): Promise<void> {
  await vi.waitFor(() => expect(envelopes).toHaveLength(count), { timeout: 15_000 });
}

/** A local back end whose admin server (the daemon's own) serves its certificate and unsubscribe links. */
async function signedBackend(options: Partial<LocalBackendOptions> & { scheme?: string } = {}) {
  let base = "";
  const local = localBackend({
    dataDir: join(dir, "data"),
    sendDsn: async () => ({}),
    snsPublicUrl: () => base,
    snsDeliveryRetryDelaysMs: [],
    ...options,
  });
  const admin = await startAdminServer({ port: 0, metrics: { render: async () => "" }, ready: () => true, sns: local.sns });
  admins.push(admin);
  base = `${options.scheme ?? "http"}://127.0.0.1:${admin.address().port}`;
  return local;
}

/** AWS's procedure: these keys (Subject only if present), each "Key\nvalue\n", in this order. */
async function verifiesWithNodeCrypto(envelope: Record<string, string>): Promise<boolean> {
  const response = await fetch(envelope.SigningCertURL!);
  expect(response.status).toBe(200);
  const certificate = await response.text();
  const algorithm = { "1": "RSA-SHA1", "2": "RSA-SHA256" }[envelope.SignatureVersion ?? ""];
  if (!algorithm) throw new Error(`unexpected SignatureVersion ${envelope.SignatureVersion}`);
  return createVerify(algorithm).update(awsStringToSign(envelope), "utf8").verify(certificate, envelope.Signature!, "base64");
}

/**
 * sns-validator fetches the certificate with https.get and insists on https and an amazonaws.com
 * host. The back end advertises https://127.0.0.1:<admin port> here; the validator is given a
 * host pattern for that, and only https.get is stubbed to fetch the same URL over plain http.
 */
function validateWithSnsValidator(envelope: Record<string, string>): Promise<Error | null> {
  vi.spyOn(https, "get").mockImplementation(((url: string, callback: (response: http.IncomingMessage) => void) =>
    http.get(url.replace(/^https:/, "http:"), callback)) as unknown as typeof https.get);
  return new Promise((resolve) => new MessageValidator(/^127\.0\.0\.1:\d+$/).validate({ ...envelope }, resolve));
}

describe("local SNS: signed HTTP notifications", () => {
  it.each(["1", "2"] as const)("SignatureVersion %s: the signature verifies against the certificate at SigningCertURL", async (version) => {
    const sub = await startSubscriber(servers);
    const local = await signedBackend({ snsHttpSubscriptions: { [TOPIC]: [sub.url] }, snsSignatureVersion: version });
    await local.publish({ topicArn: TOPIC, subject: "Amazon SES Email Receipt Notification", message: MESSAGE });
    await arrived(sub.envelopes, 1);
    const envelope = sub.envelopes[0]!;
    expect(envelope.SignatureVersion).toBe(version);
    expect(envelope.SigningCertURL).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/sns\/SimpleNotificationService-[0-9a-f]{32}\.pem$/);
    expect(envelope.Signature).toMatch(/^[A-Za-z0-9+/]{300,}={0,2}$/);
    expect(await verifiesWithNodeCrypto(envelope)).toBe(true);
    // A version-1 signature is not a version-2 one (and back).
    expect(await verifiesWithNodeCrypto({ ...envelope, SignatureVersion: version === "1" ? "2" : "1" })).toBe(false);
  });

  it("signs without a Subject when there is none, as SNS does", async () => {
    const sub = await startSubscriber(servers);
    const local = await signedBackend({ snsHttpSubscriptions: { "*": [sub.url] } });
    await local.publish({ topicArn: TOPIC, subject: "", message: "{}" });
    await arrived(sub.envelopes, 1);
    expect(sub.envelopes[0]).not.toHaveProperty("Subject");
    expect(await verifiesWithNodeCrypto(sub.envelopes[0]!)).toBe(true);
  });

  it.each(["1", "2"] as const)("SignatureVersion %s: AWS's sns-validator accepts the envelope", async (version) => {
    const sub = await startSubscriber(servers);
    const local = await signedBackend({ snsHttpSubscriptions: { [TOPIC]: [sub.url] }, snsSignatureVersion: version, scheme: "https" });
    await local.publish({ topicArn: TOPIC, subject: "Amazon SES Email Receipt Notification", message: MESSAGE });
    await arrived(sub.envelopes, 1);
    expect(sub.envelopes[0]?.SigningCertURL).toMatch(/^https:\/\/127\.0\.0\.1:/);
    expect(await validateWithSnsValidator(sub.envelopes[0]!)).toBeNull();
  });

  it("a tampered Message, Subject or Timestamp fails verification, with node:crypto and with sns-validator", async () => {
    const sub = await startSubscriber(servers);
    const local = await signedBackend({ snsHttpSubscriptions: { [TOPIC]: [sub.url] }, scheme: "https" });
    await local.publish({ topicArn: TOPIC, subject: "Amazon SES Email Receipt Notification", message: MESSAGE });
    await arrived(sub.envelopes, 1);
    const envelope = sub.envelopes[0]!;
    const tampered = { ...envelope, Message: MESSAGE.replace("body", "bodY") };
    expect((await validateWithSnsValidator(tampered))?.message).toBe("The message signature is invalid.");
    expect((await validateWithSnsValidator({ ...envelope, Timestamp: "2024-01-01T00:00:00.000Z" }))?.message).toBe(
      "The message signature is invalid.",
    );
    const http = (message: Record<string, string>) => ({ ...message, SigningCertURL: message.SigningCertURL!.replace(/^https:/, "http:") });
    expect(await verifiesWithNodeCrypto(http(envelope))).toBe(true);
    expect(await verifiesWithNodeCrypto(http(tampered))).toBe(false);
    expect(await verifiesWithNodeCrypto(http({ ...envelope, Subject: "other" }))).toBe(false);
  });

  it("keeps one self-signed certificate in <dataDir>/sns/signing.pem across restarts", async () => {
    const sub = await startSubscriber(servers);
    const subscriptions = { [TOPIC]: [sub.url] };
    await (await signedBackend({ snsHttpSubscriptions: subscriptions })).publish({ topicArn: TOPIC, subject: "s", message: "1" });
    await (await signedBackend({ snsHttpSubscriptions: subscriptions })).publish({ topicArn: TOPIC, subject: "s", message: "2" });
    await arrived(sub.envelopes, 2);
    const [first, second] = await Promise.all(sub.envelopes.map(async (envelope) => (await fetch(envelope.SigningCertURL!)).text()));
    expect(second).toBe(first);
    const stored = await readFile(join(dir, "data", "sns", "signing.pem"), "utf8");
    expect(stored).toContain(first);
    const certificate = new X509Certificate(first!);
    expect(certificate.verify(certificate.publicKey)).toBe(true);
    expect(certificate.publicKey.asymmetricKeyType).toBe("rsa");
    for (const envelope of sub.envelopes) expect(await verifiesWithNodeCrypto(envelope)).toBe(true);
  });

  it("two processes making the key at once end up with one", async () => {
    const options = { dataDir: join(dir, "data"), sendDsn: async () => ({}) };
    const [a, b] = await Promise.all([localBackend(options).sns.signingIdentity(), localBackend(options).sns.signingIdentity()]);
    expect(a.certificatePem).toBe(b.certificatePem);
    expect(await readFile(join(dir, "data", "sns", "signing.pem"), "utf8")).toContain(a.certificatePem);
  });

  it("answers 404 for a certificate name that is not its own", async () => {
    const sub = await startSubscriber(servers);
    const local = await signedBackend({ snsHttpSubscriptions: { [TOPIC]: [sub.url] } });
    await local.publish({ topicArn: TOPIC, subject: "s", message: "{}" });
    await arrived(sub.envelopes, 1);
    const other = sub.envelopes[0]!.SigningCertURL!.replace(/-[0-9a-f]{32}\.pem$/, `-${"0".repeat(32)}.pem`);
    expect((await fetch(other)).status).toBe(404);
  });
});

describe("local SNS: UnsubscribeURL", () => {
  it("fetching it answers SNS's UnsubscribeResponse and stops later deliveries, also after a restart", async () => {
    const leaving = await startSubscriber(servers);
    const staying = await startSubscriber(servers);
    const subscriptions = { [TOPIC]: [leaving.url], "*": [staying.url] };
    const local = await signedBackend({ snsHttpSubscriptions: subscriptions });
    await local.publish({ topicArn: TOPIC, subject: "s", message: "before" });
    await arrived(leaving.envelopes, 1);
    await arrived(staying.envelopes, 1);
    const unsubscribeUrl = leaving.envelopes[0]!.UnsubscribeURL!;
    expect(unsubscribeUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/sns\/\?Action=Unsubscribe&SubscriptionArn=/);
    expect(new URL(unsubscribeUrl).searchParams.get("SubscriptionArn")).toMatch(new RegExp(`^${TOPIC}:[0-9a-f-]{36}$`));
    expect(staying.envelopes[0]!.UnsubscribeURL).not.toBe(unsubscribeUrl);

    const response = await fetch(unsubscribeUrl);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/xml");
    expect(await response.text()).toMatch(
      /^<UnsubscribeResponse xmlns="http:\/\/sns\.amazonaws\.com\/doc\/2010-03-31\/">\s*<ResponseMetadata>\s*<RequestId>[0-9a-f-]{36}<\/RequestId>\s*<\/ResponseMetadata>\s*<\/UnsubscribeResponse>\s*$/,
    );
    // Unsubscribing again is not an error, as on SNS.
    expect((await fetch(unsubscribeUrl)).status).toBe(200);

    await expect(local.publish({ topicArn: TOPIC, subject: "s", message: "after" })).resolves.toMatchObject({ subscribers: [staying.url] });
    await arrived(staying.envelopes, 2);
    const restarted = await signedBackend({ snsHttpSubscriptions: subscriptions });
    await restarted.publish({ topicArn: TOPIC, subject: "s", message: "after restart" });
    await arrived(staying.envelopes, 3);
    expect(leaving.envelopes.map((envelope) => envelope.Message)).toEqual(["before"]);
    expect(staying.envelopes.map((envelope) => envelope.Message)).toEqual(["before", "after", "after restart"]);
  });

  it("answers SNS's NotFound for an unknown subscription, and a HEAD unsubscribes nothing", async () => {
    const sub = await startSubscriber(servers);
    const local = await signedBackend({ snsHttpSubscriptions: { [TOPIC]: [sub.url] } });
    await local.publish({ topicArn: TOPIC, subject: "s", message: "1" });
    await arrived(sub.envelopes, 1);
    const url = new URL(sub.envelopes[0]!.UnsubscribeURL!);

    expect((await fetch(url, { method: "HEAD" })).status).toBe(405);
    const unknown = new URL(url);
    unknown.searchParams.set("SubscriptionArn", `${TOPIC}:00000000-0000-0000-0000-000000000000`);
    const response = await fetch(unknown);
    expect(response.status).toBe(404);
    expect(await response.text()).toContain("<Code>NotFound</Code>");
    const missing = new URL(url);
    missing.searchParams.delete("SubscriptionArn");
    expect((await fetch(missing)).status).toBe(400);

    await local.publish({ topicArn: TOPIC, subject: "s", message: "2" });
    await arrived(sub.envelopes, 2);
  });
  it("refuses to publish, naming the file, while unsubscribed.json is unreadable, and stores nothing", async () => {
    const sub = await startSubscriber(servers);
    await mkdir(join(dir, "data", "sns"), { recursive: true });
    await writeFile(join(dir, "data", "sns", "unsubscribed.json"), "[{not json");
    const local = await signedBackend({ snsHttpSubscriptions: { [TOPIC]: [sub.url] } });
    await expect(local.publish({ topicArn: TOPIC, subject: "s", message: "1" })).rejects.toThrow(/unsubscribed\.json/);
    await expect(readFile(join(dir, "data", "sns", "inbound-mail.jsonl"))).rejects.toMatchObject({ code: "ENOENT" });
  });
});

describe("local SNS without an admin port", () => {
  it("still signs, and leaves SigningCertURL and UnsubscribeURL empty", async () => {
    const sub = await startSubscriber(servers);
    const local = localBackend({ dataDir: join(dir, "data"), sendDsn: async () => ({}), snsHttpSubscriptions: { [TOPIC]: [sub.url] } });
    await local.publish({ topicArn: TOPIC, subject: "s", message: "{}" });
    await arrived(sub.envelopes, 1);
    const envelope = sub.envelopes[0]!;
    expect(envelope).toMatchObject({ SigningCertURL: "", UnsubscribeURL: "" });
    const { certificatePem } = await local.sns.signingIdentity();
    expect(createVerify("RSA-SHA1").update(awsStringToSign(envelope)).verify(certificatePem, envelope.Signature!, "base64")).toBe(true);
  });
});
