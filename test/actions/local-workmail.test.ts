import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ActionError } from "../../src/actions/backend.js";
import type { ActionBackend, SendDsnRequest } from "../../src/actions/backend.js";
import { localBackend } from "../../src/actions/local/index.js";
import { actionFailure } from "../helpers/action-error.js";

const ORG_ID = "m-0123456789abcdef0123456789abcdef";
const ORG = `arn:aws:workmail:us-east-1:123456789012:organization/${ORG_ID}`;

let dir: string;
let dataDir: string;
let backend: ActionBackend;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "receiptd-local-workmail-"));
  dataDir = join(dir, "data");
  backend = localBackend({ dataDir, sendDsn: async () => ({}) });
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const message = Buffer.from(
  ["Return-Path: <sender@example.org>", "From: sender@example.org", "To: a@example.com", "Subject: hello", "", "body ".repeat(50_000), ""].join("\r\n"),
);

async function* chunked(bytes: Buffer, size = 8192): AsyncIterable<Buffer> {
  for (let offset = 0; offset < bytes.length; offset += size) yield bytes.subarray(offset, offset + size);
}


describe("local back end: deliverToMailbox", () => {
  it("delivers one copy to the Maildir of each of 3 recipients", async () => {
    const recipients = ["a@example.com", "B@Example.com", "c+tag@example.com"];
    const detail = await backend.deliverToMailbox({
      organizationArn: ORG,
      mailFrom: "sender@example.org",
      recipients,
      body: chunked(message),
      contentLength: message.length,
    });

    const orgRoot = join(dataDir, "workmail", ORG_ID);
    expect((await readdir(orgRoot)).sort()).toEqual(["a@example.com", "b@example.com", "c+tag@example.com"]);
    const names = new Set<string>();
    const inodes = new Set<number>();
    for (const mailbox of ["a@example.com", "b@example.com", "c+tag@example.com"]) {
      const path = join(orgRoot, mailbox);
      expect((await readdir(path)).sort()).toEqual(["cur", "new", "tmp"]);
      expect(await readdir(join(path, "tmp"))).toEqual([]);
      expect(await readdir(join(path, "cur"))).toEqual([]);
      const [name, ...others] = await readdir(join(path, "new"));
      expect(others).toEqual([]);
      // <seconds>.M<usec>P<pid>Q<count>R<random>.<host>
      expect(name).toMatch(new RegExp(`^\\d+\\.M\\d+P${process.pid}Q\\d+R[0-9a-f]{16}\\.[^/:]+$`));
      names.add(name ?? "");
      const file = join(path, "new", name ?? "");
      expect((await readFile(file)).equals(message)).toBe(true);
      inodes.add((await stat(file)).ino);
    }
    expect(names.size).toBe(1);
    // Written once, hard-linked into each mailbox.
    expect(inodes.size).toBe(1);
    expect(detail).toMatchObject({
      organizationRoot: orgRoot,
      delivered: [
        { recipient: "a@example.com", path: expect.stringContaining(join(orgRoot, "a@example.com", "new")) as unknown },
        { recipient: "b@example.com" },
        { recipient: "c+tag@example.com" },
      ],
    });
  });

  it("gives every delivery a new file name", async () => {
    for (let round = 0; round < 3; round += 1) {
      await backend.deliverToMailbox({ organizationArn: ORG, mailFrom: "", recipients: ["a@example.com"], body: chunked(message), contentLength: message.length });
    }
    expect(await readdir(join(dataDir, "workmail", ORG_ID, "a@example.com", "new"))).toHaveLength(3);
  });

  it("delivers once to a recipient listed twice in different case", async () => {
    const detail = await backend.deliverToMailbox({
      organizationArn: ORG,
      mailFrom: "",
      recipients: ["a@example.com", "A@EXAMPLE.COM"],
      body: chunked(message),
      contentLength: message.length,
    });
    expect(detail.delivered).toHaveLength(1);
  });

  it("fails permanently, delivering nothing, when the body is not the announced length", async () => {
    const error = await actionFailure(
      backend.deliverToMailbox({ organizationArn: ORG, mailFrom: "", recipients: ["a@example.com", "b@example.com"], body: chunked(message), contentLength: 5 }),
    );
    expect(error.failure).toBe("permanent");
    for (const mailbox of ["a@example.com", "b@example.com"]) {
      for (const sub of ["tmp", "new", "cur"]) expect(await readdir(join(dataDir, "workmail", ORG_ID, mailbox, sub))).toEqual([]);
    }
  });

  it.each([
    [ORG, "../../etc/passwd"],
    [ORG, ".."],
    [ORG, "."],
    [ORG, ""],
    [ORG, "a/b@example.com"],
    [ORG, "a\\b@example.com"],
    [ORG, "a\0@example.com"],
    ["arn:aws:workmail:us-east-1:123456789012:organization/..", "a@example.com"],
    ["arn:aws:workmail:us-east-1:123456789012:organization/../../x", "a@example.com"],
    ["arn:aws:workmail:us-east-1:123456789012:organization/", "a@example.com"],
    ["arn:aws:workmail:us-east-1:123456789012:user/x", "a@example.com"],
    ["arn:aws:sns:us-east-1:123456789012:organization/x", "a@example.com"],
    ["/abs", "a@example.com"],
  ])("refuses organization %j recipient %j permanently, writing nothing", async (organizationArn, recipient) => {
    const error = await actionFailure(
      backend.deliverToMailbox({ organizationArn, mailFrom: "", recipients: ["ok@example.com", recipient], body: chunked(message), contentLength: message.length }),
    );
    expect(error.failure).toBe("permanent");
    expect(await readdir(dir)).toEqual([]);
  });
});

describe("local back end: sendDsn", () => {
  it("hands the DSN to the configured sender and returns what it answered", async () => {
    const sent: SendDsnRequest[] = [];
    const local = localBackend({
      dataDir,
      sendDsn: async (request) => {
        sent.push(request);
        return { queued: "outbox/1.eml" };
      },
    });
    const request = { raw: Buffer.from("From: <>\r\n\r\nDSN\r\n"), to: "sender@example.org" };
    expect(await local.sendDsn(request)).toEqual({ queued: "outbox/1.eml" });
    expect(sent).toEqual([request]);
  });

  it("passes the sender's failure through", async () => {
    const local = localBackend({
      dataDir,
      sendDsn: async () => {
        throw new ActionError("transient", "relay down");
      },
    });
    const error = await actionFailure(local.sendDsn({ raw: Buffer.from("x"), to: "sender@example.org" }));
    expect(error.failure).toBe("transient");
    expect(error.message).toBe("relay down");
  });
});
