import { createReadStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import type { Header } from "../../src/rules/model.js";
import {
  formatHeaderLine,
  parseHeaderBlock,
  parseMessageHead,
  prependedHeaderBytes,
  prependHeadersStream,
  withPrependedHeaders,
} from "../../src/mail/index.js";

const samplePath = (name: string): URL => new URL(`../../samples/${name}`, import.meta.url);

async function collect(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}

const added: Header[] = [
  { name: "Return-Path", value: "<sender@example.org>" },
  { name: "X-SES-Spam-Verdict", value: "PASS" },
];

describe("formatHeaderLine", () => {
  it("writes Name: value and CRLF", () => {
    expect(formatHeaderLine({ name: "X-Test", value: "a b  c" })).toBe("X-Test: a b  c\r\n");
    expect(formatHeaderLine({ name: "X-Empty", value: "" })).toBe("X-Empty: \r\n");
  });

  it("rejects CR or LF in the value", () => {
    expect(() => formatHeaderLine({ name: "X-Test", value: "a\r\nBcc: evil@example.com" })).toThrow(TypeError);
    expect(() => formatHeaderLine({ name: "X-Test", value: "a\nb" })).toThrow(TypeError);
    expect(() => formatHeaderLine({ name: "X-Test", value: "a\rb" })).toThrow(TypeError);
  });

  it("rejects names that are not RFC 5322 field names", () => {
    for (const name of ["", "X Test", "X:Test", "X-Tést", "X\tTest", "X-Test\r\n"]) {
      expect(() => formatHeaderLine({ name, value: "v" }), JSON.stringify(name)).toThrow(TypeError);
    }
  });

  it("folds a line longer than 998 octets so that unfolding restores the value", () => {
    const value = Array.from({ length: 300 }, (_, i) => `word${i}`).join(" ");
    const line = formatHeaderLine({ name: "X-Long", value });
    const lines = line.slice(0, -2).split("\r\n");
    expect(lines.length).toBeGreaterThan(1);
    for (const l of lines) expect(Buffer.byteLength(l)).toBeLessThanOrEqual(998);
    expect(parseHeaderBlock(Buffer.from(line))).toEqual([{ name: "X-Long", value }]);
    const unbreakable = "x".repeat(1200);
    expect(parseHeaderBlock(Buffer.from(formatHeaderLine({ name: "X-Long", value: unbreakable })))).toEqual([
      { name: "X-Long", value: unbreakable },
    ]);
  });
});

describe("prepending headers", () => {
  it("puts the first header on top, encoded as UTF-8", () => {
    expect(prependedHeaderBytes([...added, { name: "X-Note", value: "Grüße" }])).toEqual(
      Buffer.from("Return-Path: <sender@example.org>\r\nX-SES-Spam-Verdict: PASS\r\nX-Note: Grüße\r\n", "utf8"),
    );
    expect(prependedHeaderBytes([])).toEqual(Buffer.alloc(0));
  });

  it("leaves the message bytes untouched behind the new lines", async () => {
    const message = await readFile(samplePath("plain.eml"));
    const out = withPrependedHeaders(added, message);
    const prefix = "Return-Path: <sender@example.org>\r\nX-SES-Spam-Verdict: PASS\r\n";
    expect(out.subarray(0, prefix.length).toString()).toBe(prefix);
    expect(out.subarray(prefix.length)).toEqual(message);
    expect(parseMessageHead(out).headers.slice(0, 3)).toEqual([...added, { name: "Return-Path", value: "<alice@example.org>" }]);
  });

  it("adds CRLF lines to a bare-LF message, which still parses whole", async () => {
    const message = await readFile(samplePath("bare-lf.eml"));
    const out = withPrependedHeaders(added, message);
    expect(out.subarray(0, 36).toString()).toBe("Return-Path: <sender@example.org>\r\nX");
    const original = parseMessageHead(message);
    const changed = parseMessageHead(out);
    expect(changed.headers).toEqual([...added, ...original.headers]);
    expect(changed.headerBytes).toBe(original.headerBytes + prependedHeaderBytes(added).length);
  });

  it("streams the same bytes from a file stream and from an async iterable", async () => {
    const message = await readFile(samplePath("multipart.eml"));
    const expected = withPrependedHeaders(added, message);
    expect(await collect(prependHeadersStream(added, createReadStream(samplePath("multipart.eml"), { highWaterMark: 64 })))).toEqual(expected);
    async function* pieces(): AsyncGenerator<Buffer> {
      for (let i = 0; i < message.length; i += 100) yield message.subarray(i, i + 100);
    }
    expect(await collect(prependHeadersStream(added, pieces()))).toEqual(expected);
  });

  it("pulls the source only as it is consumed", async () => {
    let pulled = 0;
    async function* source(): AsyncGenerator<Buffer> {
      for (let i = 0; i < 1000; i++) {
        pulled++;
        yield Buffer.alloc(1024 * 1024);
      }
    }
    const iterator = prependHeadersStream(added, source())[Symbol.asyncIterator]();
    const first = await iterator.next();
    expect(first.value).toEqual(prependedHeaderBytes(added));
    expect(pulled).toBe(0);
    await iterator.next();
    expect(pulled).toBe(1);
    await iterator.return?.();
  });

  it("rejects an invalid header before any byte flows", () => {
    expect(() => prependHeadersStream([{ name: "Bad Name", value: "x" }], Readable.from([]))).toThrow(TypeError);
  });
});
