import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import type { AddressInfo, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ActionError } from "../../src/actions/backend.js";
import type { MailboxRequest } from "../../src/actions/backend.js";
import { directoryDsnSender, smtpDsnSender } from "../../src/actions/transports/dsn.js";
import { classifySmtpError } from "../../src/actions/transports/errors.js";
import { smtpMailboxDelivery } from "../../src/actions/transports/mailbox.js";
import { buildDsn } from "../../src/mail/dsn.js";
import { startSmtpServer } from "../helpers/smtp-server.js";
import type { TestSmtpServer } from "../helpers/smtp-server.js";
import { actionFailure } from "../helpers/action-error.js";

const ORG = "arn:aws:workmail:us-east-1:123456789012:organization/m-68755160c4cb4e29a2b2f8fb58f359d7";

function dsn(n = 1): Buffer {
  return buildDsn({
    reportingMta: "mx.example.com",
    arrivalDate: new Date("2026-11-23T12:00:00Z"),
    date: new Date("2026-11-23T12:00:01Z"),
    messageId: `<dsn-${n}@mx.example.com>`,
    from: "bounces@example.com",
    to: "sender@example.net",
    recipients: ["a@example.com"],
    smtpReplyCode: "550",
    statusCode: "5.1.1",
    message: "Mailbox does not exist",
    // A leading dot tests dot-stuffing on the way.
    originalHeaders: Buffer.from("Subject: test\r\nX-Dots: .\r\n\r\n"),
  });
}

/**
 * A message of `size` bytes in 64 KiB chunks, produced lazily; `produced` counts what was taken
 * so far. It ends in CRLF, as every message SMTP can carry does.
 */
function lazyMessage(size: number): { body: AsyncIterable<Buffer>; produced: () => number; sha256: string } {
  const header = Buffer.from("From: a@example.net\r\nTo: b@example.com\r\nSubject: big\r\n\r\n");
  const line = Buffer.from(`${"0123456789".repeat(7)}..\r\n.leading dot\r\n`);
  const chunkSize = 64 * 1024;
  const filler = Buffer.alloc(chunkSize);
  for (let i = 0; i < chunkSize; i += line.length) line.copy(filler, i);
  const whole = (): Buffer[] => {
    const out: Buffer[] = [header];
    let left = size - header.length - 2;
    while (left > 0) {
      const n = Math.min(chunkSize, left);
      out.push(filler.subarray(0, n));
      left -= n;
    }
    out.push(Buffer.from("\r\n"));
    return out;
  };
  const hash = createHash("sha256");
  for (const chunk of whole()) hash.update(chunk);
  let produced = 0;
  return {
    sha256: hash.digest("hex"),
    produced: () => produced,
    body: (async function* () {
      for (const chunk of whole()) {
        // Lets the event loop run between chunks, as a file or network source would.
        await new Promise((resolve) => setImmediate(resolve));
        produced += chunk.length;
        yield chunk;
      }
    })(),
  };
}

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}


describe("smtpDsnSender", () => {
  let server: TestSmtpServer;
  let authServer: TestSmtpServer;
  beforeAll(async () => {
    server = await startSmtpServer({
      rcptReply: (address) =>
        address.startsWith("gone@")
          ? { code: 550, text: "5.1.1 No such user" }
          : address.startsWith("busy@")
            ? { code: 451, text: "4.3.0 Try again later" }
            : undefined,
    });
    authServer = await startSmtpServer({ auth: { user: "relay", pass: "s3cret" } });
  });
  afterAll(async () => {
    await server.close();
    await authServer.close();
  });

  it("sends from the null sender to the request's address, byte for byte", async () => {
    const raw = dsn();
    const result = await smtpDsnSender(`smtp://127.0.0.1:${server.port}`)({ raw, to: "sender@example.net" });
    const mail = server.received.at(-1);
    expect(mail?.mailFrom).toBe("");
    expect(mail?.rcptTo).toEqual(["sender@example.net"]);
    expect(mail?.mailFromArgs.SIZE).toBe(String(raw.length));
    expect(mail?.data.equals(raw)).toBe(true);
    expect(result).toEqual({
      relay: `smtp://127.0.0.1:${server.port}`,
      response: expect.stringMatching(/^250 /) as unknown,
      messageId: "<dsn-1@mx.example.com>",
    });
  });

  it("authenticates with the URL's credentials and keeps them out of the result", async () => {
    const result = await smtpDsnSender(`smtp://relay:s3cret@127.0.0.1:${authServer.port}`)({ raw: dsn(2), to: "sender@example.net" });
    expect(authServer.received).toHaveLength(1);
    expect(JSON.stringify(result)).not.toContain("s3cret");
    const refused = await actionFailure(smtpDsnSender(`smtp://relay:wrong@127.0.0.1:${authServer.port}`)({ raw: dsn(3), to: "sender@example.net" }));
    expect(refused.failure).toBe("permanent");
    expect(refused.message).toContain("535");
  });

  it("reports a 550 reply as permanent and a 451 reply as transient, with the server's text", async () => {
    const send = smtpDsnSender(`smtp://127.0.0.1:${server.port}`);
    const gone = await actionFailure(send({ raw: dsn(), to: "gone@example.net" }));
    expect(gone.failure).toBe("permanent");
    expect(gone.message).toContain("550 5.1.1 No such user");
    const busy = await actionFailure(send({ raw: dsn(), to: "busy@example.net" }));
    expect(busy.failure).toBe("transient");
    expect(busy.message).toContain("451 4.3.0 Try again later");
  });

  it("reports a refused connection as transient", async () => {
    const refused = await actionFailure(smtpDsnSender(`smtp://127.0.0.1:${await closedPort()}`)({ raw: dsn(), to: "sender@example.net" }));
    expect(refused.failure).toBe("transient");
    expect(refused.message).toMatch(/ECONNREFUSED/);
  });

  it("reports a server that never greets as transient once the greeting times out", async () => {
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => sockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = silent.address() as AddressInfo;
      const timedOut = await actionFailure(smtpDsnSender(`smtp://127.0.0.1:${port}?greetingTimeout=200`)({ raw: dsn(), to: "sender@example.net" }));
      expect(timedOut.failure).toBe("transient");
      expect((timedOut.cause as { code?: string }).code).toBe("ETIMEDOUT");
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  it("reports an envelope nodemailer refuses before any command as permanent", async () => {
    const refused = await actionFailure(smtpDsnSender(`smtp://127.0.0.1:${server.port}`)({ raw: dsn(), to: "" }));
    expect(refused.failure).toBe("permanent");
    expect((refused.cause as { code?: string }).code).toBe("EENVELOPE");
  });

  it("accepts only smtp:// and smtps:// relays", () => {
    expect(() => smtpDsnSender("http://127.0.0.1:25")).toThrow(TypeError);
  });
});

describe("smtpMailboxDelivery", () => {
  let smtp: TestSmtpServer;
  let lmtp: TestSmtpServer;
  let tls: TestSmtpServer;
  const firstChunk: { smtp?: number; lmtp?: number } = {};
  let current: (() => number) | undefined;
  beforeAll(async () => {
    smtp = await startSmtpServer({
      onChunk: () => (firstChunk.smtp ??= current?.()),
      rcptReply: (address) => (address.startsWith("gone@") ? { code: 550, text: "5.1.1 No such user" } : undefined),
    });
    lmtp = await startSmtpServer({
      lmtp: true,
      onChunk: () => (firstChunk.lmtp ??= current?.()),
      lmtpReply: (address) =>
        address.startsWith("full@")
          ? { code: 452, text: "4.2.2 Mailbox full" }
          : address.startsWith("gone@")
            ? { code: 550, text: "5.1.1 No such user" }
            : undefined,
    });
    tls = await startSmtpServer({ secure: true });
  });
  afterAll(async () => {
    await Promise.all([smtp.close(), lmtp.close(), tls.close()]);
  });

  const size = 6 * 1024 * 1024 + 123;

  function request(organizationArn: string, recipients: string[], message = lazyMessage(size)): MailboxRequest {
    current = message.produced;
    return { organizationArn, mailFrom: "sender@example.net", recipients, body: message.body, contentLength: size };
  }

  it("streams a multi-megabyte message over SMTP with the request's envelope", async () => {
    const deliver = smtpMailboxDelivery({ [ORG]: { host: "127.0.0.1", port: smtp.port } });
    const message = lazyMessage(size);
    const result = await deliver(request(ORG, ["a@example.com", "b@example.com"], message));
    const mail = smtp.received.at(-1);
    expect(mail?.mailFrom).toBe("sender@example.net");
    expect(mail?.rcptTo).toEqual(["a@example.com", "b@example.com"]);
    expect(mail?.mailFromArgs.SIZE).toBe(String(size));
    expect(mail?.data.length).toBe(size);
    expect(mail?.sha256).toBe(message.sha256);
    // The server saw the first bytes while most of the message was still to be produced.
    expect(firstChunk.smtp).toBeLessThan(size / 2);
    expect(result).toMatchObject({ host: `smtp://127.0.0.1:${smtp.port}`, accepted: ["a@example.com", "b@example.com"] });
  });

  it("streams a multi-megabyte message over LMTP", async () => {
    const deliver = smtpMailboxDelivery({ [ORG]: { host: "127.0.0.1", port: lmtp.port, lmtp: true } });
    const message = lazyMessage(size);
    const result = await deliver(request(ORG, ["a@example.com", "b@example.com"], message));
    const mail = lmtp.received.at(-1);
    expect(mail?.rcptTo).toEqual(["a@example.com", "b@example.com"]);
    expect(mail?.sha256).toBe(message.sha256);
    expect(firstChunk.lmtp).toBeLessThan(size / 2);
    expect(result).toMatchObject({ host: `lmtp://127.0.0.1:${lmtp.port}`, accepted: ["a@example.com", "b@example.com"] });
  });

  it("sends a message from the null sender as MAIL FROM:<>", async () => {
    const deliver = smtpMailboxDelivery({ [ORG]: { host: "127.0.0.1", port: smtp.port } });
    await deliver({ ...request(ORG, ["a@example.com"]), mailFrom: "" });
    expect(smtp.received.at(-1)?.mailFrom).toBe("");
  });

  it("delivers over TLS", async () => {
    const deliver = smtpMailboxDelivery({
      [ORG]: { host: "127.0.0.1", port: tls.port, secure: true, tls: { rejectUnauthorized: false } },
    });
    const message = lazyMessage(size);
    await deliver(request(ORG, ["a@example.com"], message));
    expect(tls.received.at(-1)?.sha256).toBe(message.sha256);
  });

  it("fails when a recipient is refused, permanent for 5xx and transient when any is 4xx", async () => {
    const overSmtp = smtpMailboxDelivery({ [ORG]: { host: "127.0.0.1", port: smtp.port } });
    const gone = await actionFailure(overSmtp(request(ORG, ["a@example.com", "gone@example.com"])));
    expect(gone.failure).toBe("permanent");
    expect(gone.message).toContain("gone@example.com: 550 5.1.1 No such user");

    const overLmtp = smtpMailboxDelivery({ [ORG]: { host: "127.0.0.1", port: lmtp.port, lmtp: true } });
    const full = await actionFailure(overLmtp(request(ORG, ["a@example.com", "gone@example.com", "full@example.com"])));
    expect(full.failure).toBe("transient");
    expect(full.message).toContain("full@example.com: 452 4.2.2 Mailbox full");
    expect(full.message).toContain("accepted a@example.com");
    const allGone = await actionFailure(overLmtp(request(ORG, ["gone@example.com"])));
    expect(allGone.failure).toBe("permanent");
  });

  it("fails permanently for an organization without a host, naming it", async () => {
    const deliver = smtpMailboxDelivery({ [ORG]: { host: "127.0.0.1", port: smtp.port } });
    const other = "arn:aws:workmail:us-east-1:123456789012:organization/m-other";
    const body = Readable.from([Buffer.from("Subject: x\r\n\r\n")]);
    const unknown = await actionFailure(deliver({ ...request(other, ["a@example.com"]), body }));
    expect(unknown.failure).toBe("permanent");
    expect(unknown.message).toContain(other);
    expect(body.destroyed).toBe(true);
    const inherited = await actionFailure(deliver(request("constructor", ["a@example.com"])));
    expect(inherited.failure).toBe("permanent");
  });

  it("reports a refused connection as transient", async () => {
    const deliver = smtpMailboxDelivery({ [ORG]: { host: "127.0.0.1", port: await closedPort() } });
    expect((await actionFailure(deliver(request(ORG, ["a@example.com"])))).failure).toBe("transient");
  });
});

describe("classifySmtpError", () => {
  it("keeps an ActionError as it is", () => {
    const error = new ActionError("permanent", "no such bucket");
    expect(classifySmtpError(error)).toBe(error);
  });

  it("takes anything else as transient", () => {
    expect(classifySmtpError(new Error("socket hang up")).failure).toBe("transient");
    expect(classifySmtpError("weird").failure).toBe("transient");
  });
});

describe("directoryDsnSender", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "receiptd-dsn-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("writes each DSN to its own complete .eml file and leaves nothing else behind", async () => {
    const target = join(dir, "outbox");
    const send = directoryDsnSender(target);
    const raws = Array.from({ length: 40 }, (_, i) => dsn(i));
    const results = await Promise.all(raws.map((raw) => send({ raw, to: "sender@example.net" })));
    const files = results.map((r) => r.file as string);
    expect(new Set(files).size).toBe(raws.length);
    const names = (await readdir(target)).sort();
    expect(names).toEqual(files.map((f) => f.slice(target.length + 1)).sort());
    for (const name of names) expect(name).toMatch(/^\d{8}T\d{9}Z-\d{6}-[0-9a-f]{12}\.eml$/);
    for (const [i, file] of files.entries()) expect((await readFile(file)).equals(raws[i] as Buffer)).toBe(true);
  });

  it("never overwrites a file already there", async () => {
    const target = join(dir, "existing");
    const send = directoryDsnSender(target);
    const first = (await send({ raw: dsn(1), to: "sender@example.net" })).file as string;
    await writeFile(join(target, "keep.eml"), "mine");
    for (let i = 0; i < 20; i++) await send({ raw: dsn(2), to: "sender@example.net" });
    expect((await readFile(first)).equals(dsn(1))).toBe(true);
    expect(await readFile(join(target, "keep.eml"), "utf8")).toBe("mine");
    expect(await readdir(target)).toHaveLength(22);
  });
});
