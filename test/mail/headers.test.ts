import { randomFillSync } from "node:crypto";
import fs from "node:fs";
import { mkdtemp, open, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { MessageParseError, parseHeaderBlock, parseMessageHead, readMessageHead } from "../../src/mail/index.js";

const b = (s: string): Buffer => Buffer.from(s, "utf8");

describe("parseHeaderBlock", () => {
  it("keeps names as written and strips only the leading whitespace of values", () => {
    expect(parseHeaderBlock(b("Subject:   Hello  \r\nX-MIXED-case: a:b:c\r\nX-Empty:\r\n"))).toEqual([
      { name: "Subject", value: "Hello  " },
      { name: "X-MIXED-case", value: "a:b:c" },
      { name: "X-Empty", value: "" },
    ]);
  });

  it("unfolds as SES shows it: a line break and the blanks after it become one space", () => {
    const block = b("To: a@example.com,\r\n b@example.com,\r\n\tc@example.com\r\nSubject: one \n  two\r\nX-Dkim: a;\r\n        b\r\n");
    expect(parseHeaderBlock(block)).toEqual([
      { name: "To", value: "a@example.com, b@example.com, c@example.com" },
      { name: "Subject", value: "one  two" },
      { name: "X-Dkim", value: "a; b" },
    ]);
  });

  it("drops the leading whitespace of a value that starts on a continuation line", () => {
    expect(parseHeaderBlock(b("Subject:\r\n   \r\n  hello\r\n world\r\n"))).toEqual([{ name: "Subject", value: "hello world" }]);
  });

  it("accepts bare LF line endings", () => {
    expect(parseHeaderBlock(b("From: a@example.org\nTo: b@example.com\n\nbody: no\n"))).toEqual([
      { name: "From", value: "a@example.org" },
      { name: "To", value: "b@example.com" },
    ]);
  });

  it("stops at the empty line: the body is not headers", () => {
    expect(parseHeaderBlock(b("A: 1\r\n\r\nB: 2\r\n"))).toEqual([{ name: "A", value: "1" }]);
  });

  it("skips an mbox From line", () => {
    expect(parseHeaderBlock(b("From MAILER-DAEMON Fri Jul  8 12:08:34 2011\nFrom: a@example.org\n"))).toEqual([
      { name: "From", value: "a@example.org" },
    ]);
  });

  it("skips lines that are no header field, with their continuations, without failing", () => {
    const block = b("A: 1\r\nthis line has no colon\r\n continued\r\nnot a name: x\r\n: empty name\r\n orphan\r\nB: 2\r\n");
    expect(parseHeaderBlock(block)).toEqual([
      { name: "A", value: "1" },
      { name: "B", value: "2" },
    ]);
  });

  it("ignores a continuation line before any field", () => {
    expect(parseHeaderBlock(b("  stray\r\nA: 1\r\n"))).toEqual([{ name: "A", value: "1" }]);
  });

  it("accepts the obsolete whitespace before the colon", () => {
    expect(parseHeaderBlock(b("Subject \t: x\r\n"))).toEqual([{ name: "Subject", value: "x" }]);
  });

  it("decodes raw UTF-8 (RFC 6532)", () => {
    expect(parseHeaderBlock(b("Subject: Grüße 你好\r\nTo: Zoë <zoe@example.com>\r\n"))).toEqual([
      { name: "Subject", value: "Grüße 你好" },
      { name: "To", value: "Zoë <zoe@example.com>" },
    ]);
  });

  it("parses a block without a final line break", () => {
    expect(parseHeaderBlock(b("A: 1\r\nB: 2"))).toEqual([
      { name: "A", value: "1" },
      { name: "B", value: "2" },
    ]);
  });

  it("parses a realistic 2 KB header block (its speed is measured by npm run bench:replay)", () => {
    const lines = [
      "Return-Path: <bounce-1234@mail.example.org>",
      "Received: from mail.example.org (mail.example.org [192.0.2.10])\r\n\tby mx.example.com with ESMTPS id 4AbCdEf; Mon, 3 Mar 2025 09:15:00 +0000",
      "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=s1;\r\n\th=from:to:subject:date:message-id; bh=" + "x".repeat(44) + ";\r\n\tb=" + "y".repeat(340),
      "From: Alice Example <alice@example.org>",
      "To: info@example.com, \"Doe, Jane\" <jane@example.com>",
      "Subject: =?UTF-8?B?R3LDvMOfZQ==?= and more",
      "Date: Mon, 3 Mar 2025 09:15:00 +0000",
      "Message-ID: <plain-0001@mail.example.org>",
      "MIME-Version: 1.0",
      "Content-Type: multipart/alternative; boundary=\"b1\"",
    ];
    while (lines.join("\r\n").length < 2048) lines.push(`X-Filler-${lines.length}: ${"z".repeat(60)}`);
    const block = b(lines.join("\r\n") + "\r\n\r\n");
    const fields = parseHeaderBlock(block);
    expect(fields.map((field) => field.name)).toEqual(lines.map((line) => line.slice(0, line.indexOf(":"))));
  });
});

describe("parseMessageHead", () => {
  it("locates the end of the header block with CRLF and with LF", () => {
    const crlf = b("A: 1\r\nB: 2\r\n\r\nbody\r\n");
    expect(parseMessageHead(crlf)).toEqual({
      headers: [
        { name: "A", value: "1" },
        { name: "B", value: "2" },
      ],
      headerBytes: 14,
      size: crlf.length,
      headerBlock: crlf.subarray(0, 14),
    });
    const lf = b("A: 1\nB: 2\n\nbody\n");
    expect(parseMessageHead(lf).headerBytes).toBe(11);
  });

  it("takes a message without an empty line for all header", () => {
    const bytes = b("A: 1\r\nB: 2\r\n");
    const head = parseMessageHead(bytes);
    expect(head.headerBytes).toBe(bytes.length);
    expect(head.headers).toHaveLength(2);
  });

  it("counts an mbox From line into the header block", () => {
    const bytes = b("From someone@example.org Mon Mar  3 09:15:00 2025\nA: 1\n\nbody");
    const head = parseMessageHead(bytes);
    expect(head.headers).toEqual([{ name: "A", value: "1" }]);
    expect(head.headerBytes).toBe(bytes.indexOf("body"));
  });

  it("accepts an empty header block (a body-only message)", () => {
    const head = parseMessageHead(b("\r\nbody"));
    expect(head).toMatchObject({ headers: [], headerBytes: 2 });
  });

  it("rejects an empty message", () => {
    expect(() => parseMessageHead(Buffer.alloc(0))).toThrow(new MessageParseError("empty message"));
  });

  it("rejects input whose first line is not a header field", () => {
    expect(() => parseMessageHead(b("Hello world\r\n\r\n"))).toThrow(
      new MessageParseError("no header block: line 1 is not a header field"),
    );
    expect(() => parseMessageHead(b("Dear all: hello\r\n"))).toThrow(MessageParseError);
    expect(() => parseMessageHead(b(" folded: no\r\n"))).toThrow(MessageParseError);
    expect(() => parseMessageHead(b("From x@example.org Mon Mar  3 09:15:00 2025\nhello\n"))).toThrow(
      new MessageParseError("no header block: line 2 is not a header field"),
    );
  });

  it("caps the header block at maxHeaderBytes", () => {
    const bytes = b("A: " + "x".repeat(100) + "\r\n\r\nbody");
    expect(() => parseMessageHead(bytes, { maxHeaderBytes: 50 })).toThrow(MessageParseError);
    expect(parseMessageHead(bytes, { maxHeaderBytes: 107 }).headerBytes).toBe(107);
    expect(() => parseMessageHead(bytes, { maxHeaderBytes: 106 })).toThrow(/exceeds 106 bytes/);
    const noBody = b("A: " + "x".repeat(100));
    expect(parseMessageHead(noBody, { maxHeaderBytes: 103 }).headerBytes).toBe(103);
    expect(() => parseMessageHead(noBody, { maxHeaderBytes: 102 })).toThrow(MessageParseError);
  });
});

describe("readMessageHead", () => {
  let dir: string;
  const header = "From: a@example.org\r\nTo: b@example.com\r\nSubject: big\r\n\r\n";

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "receiptd-mail-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });

  /** Counts the bytes readMessageHead reads through fs.read while `run` goes on. */
  async function bytesReadBy(run: () => Promise<unknown>): Promise<number> {
    let total = 0;
    const original = fs.read;
    const spy = vi.spyOn(fs, "read").mockImplementation(((...args: unknown[]) => {
      const callback = args.pop() as (error: NodeJS.ErrnoException | null, bytesRead: number, buffer: Buffer) => void;
      return (original as (...a: unknown[]) => void)(...args, (error: NodeJS.ErrnoException | null, bytesRead: number, buffer: Buffer) => {
        total += bytesRead;
        callback(error, bytesRead, buffer);
      });
    }) as typeof fs.read);
    await run();
    expect(spy).toHaveBeenCalled();
    spy.mockRestore();
    return total;
  }

  it("reads the header block only, however large the body", async () => {
    const small = join(dir, "small.eml");
    await writeFile(small, header + "short body\r\n");
    const big = join(dir, "big.eml");
    // 50 MB of random bytes: binary garbage, no structure a parser could use.
    const body = randomFillSync(Buffer.alloc(50 * 1024 * 1024));
    await writeFile(big, Buffer.concat([b(header), body]));

    const smallRead = await bytesReadBy(() => readMessageHead(small));
    let head: Awaited<ReturnType<typeof readMessageHead>> | undefined;
    const bigRead = await bytesReadBy(async () => {
      head = await readMessageHead(big);
    });
    expect(head?.headerBytes).toBe(Buffer.byteLength(header));
    expect(head?.size).toBe(Buffer.byteLength(header) + body.length);
    expect(head?.headers.map((h) => h.name)).toEqual(["From", "To", "Subject"]);
    expect(smallRead).toBeLessThanOrEqual(64 * 1024);
    expect(bigRead).toBeLessThanOrEqual(64 * 1024);
  });

  it("costs the same for a 1 GiB message as for a small one", async () => {
    const sparse = join(dir, "sparse.eml");
    const handle = await open(sparse, "w");
    await handle.write(header);
    await handle.truncate(1024 * 1024 * 1024);
    await handle.close();
    const read = await bytesReadBy(async () => {
      const head = await readMessageHead(sparse);
      expect(head.size).toBe(1024 * 1024 * 1024);
      expect(head.headerBytes).toBe(Buffer.byteLength(header));
    });
    expect(read).toBeLessThanOrEqual(64 * 1024);
  });

  it("finds the empty line wherever it falls relative to read chunks", async () => {
    for (const shift of [-3, -2, -1, 0, 1, 2]) {
      const filler = "X-Filler: " + "f".repeat(64 * 1024 + shift - 40) + "\r\n";
      const text = "A: 1\r\n" + filler + "B: 2\r\n\r\nbody\r\n\r\nC: 3\r\n";
      const file = join(dir, `chunk${shift}.eml`);
      await writeFile(file, text);
      const head = await readMessageHead(file);
      expect(head.headers.map((h) => h.name)).toEqual(["A", "X-Filler", "B"]);
      expect(head.headerBytes).toBe(text.indexOf("body"));
      expect(head.headerBlock.toString()).toBe(text.slice(0, head.headerBytes));
    }
  });

  it("takes a file without an empty line for all header", async () => {
    const file = join(dir, "no-body.eml");
    await writeFile(file, "A: 1\nB: 2\n");
    const head = await readMessageHead(file);
    expect(head).toMatchObject({ headerBytes: 10, size: 10, headers: [{ name: "A" }, { name: "B" }] });
  });

  it("gives the same head as parseMessageHead", async () => {
    const text = "From x@example.org Mon Mar  3 09:15:00 2025\nA: 1\n folded\nB: 2\n\nbody\n";
    const file = join(dir, "same.eml");
    await writeFile(file, text);
    expect(await readMessageHead(file)).toEqual(parseMessageHead(b(text)));
  });

  it("stops reading at maxHeaderBytes when no empty line comes", async () => {
    const file = join(dir, "endless.eml");
    await writeFile(file, "A: " + "x".repeat(300 * 1024) + "\r\n\r\nbody");
    const read = await bytesReadBy(async () => {
      await expect(readMessageHead(file, { maxHeaderBytes: 100 * 1024 })).rejects.toThrow(MessageParseError);
    });
    expect(read).toBeLessThanOrEqual(100 * 1024);
  });

  it("rejects an empty file and a file that is no message", async () => {
    const empty = join(dir, "empty.eml");
    await writeFile(empty, "");
    await expect(readMessageHead(empty)).rejects.toThrow(new MessageParseError("empty message"));
    const text = join(dir, "text.txt");
    await writeFile(text, "just some text\nwith: a colon later\n");
    await expect(readMessageHead(text)).rejects.toThrow("no header block: line 1 is not a header field");
  });

  it("lets file system errors through as they are", async () => {
    await expect(readMessageHead(join(dir, "missing.eml"))).rejects.toMatchObject({ code: "ENOENT" });
  });
});
