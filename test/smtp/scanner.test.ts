import { describe, expect, it } from "vitest";
import { parseMessageHead } from "../../src/mail/headers.js";
import {
  DataScanner,
  MAX_HEADER_BLOCK_BYTES,
  MAX_HEADER_FIELD_BYTES,
  MAX_HEADER_LINES,
  MAX_PARSED_FIELD_BYTES,
  MAX_RECEIVED_FIELDS,
} from "../../src/smtp/scanner.js";

/** Feeds `content` split at the given offsets; returns the output and the verdict. */
function scan(content: string, splits: number[] = [], maxBytes = 1_000_000): { out: string; violation: string | null } {
  const scanner = new DataScanner(maxBytes);
  const bytes = Buffer.from(content, "latin1");
  const outs: Buffer[] = [];
  let from = 0;
  for (const at of [...splits, bytes.length]) {
    const out = scanner.push(bytes.subarray(from, at));
    if (out) outs.push(out);
    from = at;
  }
  return { out: Buffer.concat(outs).toString("latin1"), violation: scanner.violation };
}

/** Every way to cut `content` in two, plus byte by byte. */
function everySplit(content: string): number[][] {
  const cuts = Array.from({ length: content.length - 1 }, (_, i) => [i + 1]);
  cuts.push(Array.from({ length: content.length - 1 }, (_, i) => i + 1));
  return cuts;
}

describe("DATA content scanner (docs/behaviour.md §4)", () => {
  const sequences = {
    "<LF>.<LF>": "\n.\n",
    "<LF>.<CR><LF>": "\n.\r\n",
    "<CR><LF>.<LF>": "\r\n.\n",
    "<CR>.<CR>": "\r.\r",
    "<CR>.<LF>": "\r.\n",
    "<CR>.<CR><LF>": "\r.\r\n",
    "<CR><LF>.<CR>": "\r\n.\r",
    "<LF>.<CR>": "\n.\r",
  };

  for (const [name, sequence] of Object.entries(sequences)) {
    it(`refuses ${name} wherever the chunks are cut`, () => {
      const content = `Subject: x\r\n\r\nbody${sequence}MAIL FROM:<a@b>\r\n`;
      expect(scan(content).violation).toBe("smuggling");
      for (const splits of everySplit(content)) expect(scan(content, splits).violation, `cut at ${splits}`).toBe("smuggling");
    });
  }

  it("sees a bare-LF dot line opening the content, after the CRLF of the DATA command", () => {
    expect(scan(".\nMAIL FROM:<a@b>\r\n").violation).toBe("smuggling");
    expect(scan(".\n", [1]).violation).toBe("smuggling");
    expect(scan("\n.\r\nMAIL FROM:<a@b>\r\n").violation).toBe("smuggling");
    expect(scan(".\rMAIL FROM:<a@b>\r\n").violation).toBe("smuggling");
    expect(scan(".\rM", [1]).violation).toBe("smuggling");
    expect(scan(".\rM", [2]).violation).toBe("smuggling");
  });

  it("lets a lone-dot line through: <CR><LF>..<CR><LF> on the wire is <CR><LF>.<CR><LF> in content", () => {
    const content = "Subject: dot\r\n\r\nabove\r\n.\r\nbelow\r\n.\r\n";
    for (const splits of [[], ...everySplit(content)]) expect(scan(content, splits), `cut at ${splits}`).toEqual({ out: content, violation: null });
    expect(scan(".\r\nfirst line is a lone dot\r\n").violation).toBeNull();
  });

  it("judges a dot and CR at the end of the last line: DATA content always ends with that line's CRLF", () => {
    // On the wire `...<CR><LF>.<CR><CR><LF>.<CR><LF>`: smtp-server keeps the CRLF before the final dot.
    for (const content of ["Subject: x\r\n\r\nbody\r\n.\r\r\n", "Subject: x\r\n\r\nbody\r.\r\n", ".\r\r\n"]) {
      for (const splits of [[], ...everySplit(content)]) expect(scan(content, splits).violation, `${JSON.stringify(content)} cut at ${splits}`).toBe("smuggling");
    }
  });

  it("lets ordinary content through, dots included", () => {
    const content = "Subject: dots\r\n\r\n.leading dot\r\nmid . dot\r\n..\r\nend.\r\n";
    for (const splits of [[], ...everySplit(content)]) expect(scan(content, splits)).toEqual({ out: content, violation: null });
  });

  it("normalises bare LF to CRLF, also when a CR and its LF fall in different chunks", () => {
    const content = "a\nb\r\nc\n\nd\r";
    const expected = "a\r\nb\r\nc\r\n\r\nd\r";
    for (const splits of [[], ...everySplit(content)]) expect(scan(content, splits).out, `cut at ${splits}`).toBe(expected);
  });

  it("leaves bare CR alone", () => {
    expect(scan("a\rb\r\n").out).toBe("a\rb\r\n");
  });

  it("refuses content over the limit, counting bytes as received, and stays refused", () => {
    const scanner = new DataScanner(10);
    expect(scanner.push(Buffer.from("12345\n"))?.toString()).toBe("12345\r\n");
    expect(scanner.push(Buffer.from("6789"))?.toString()).toBe("6789");
    expect(scanner.violation).toBeNull();
    expect(scanner.push(Buffer.from("0"))).toBeNull();
    expect(scanner.violation).toBe("size");
    expect(scanner.push(Buffer.from("more"))).toBeNull();
    expect(scanner.bytes).toBe(15);
  });

  describe("header block bounds (docs/behaviour.md §4)", () => {
    /** Lines cut into chunks of `size` bytes, as the socket might deliver them. */
    const scanChunked = (content: string, size: number): string | null => {
      const scanner = new DataScanner(40 * 1024 * 1024);
      const bytes = Buffer.from(content, "latin1");
      for (let at = 0; at < bytes.length; at += size) scanner.push(bytes.subarray(at, at + size));
      return scanner.violation;
    };
    const line = (length: number): string => `X-Pad: ${"p".repeat(length - 9)}\r\n`;

    it("lets a header block of exactly the limits through, in any chunking", () => {
      const lines = `Subject: x\r\n${" y\r\n".repeat(MAX_HEADER_LINES - 1)}\r\nbody\r\n`;
      const field = `Subject: ${"x".repeat(MAX_HEADER_FIELD_BYTES - 15)}\r\n y\r\n\r\nbody\r\n`;
      const block = `${line(2000).repeat(Math.floor(MAX_HEADER_BLOCK_BYTES / 2000))}${line((MAX_HEADER_BLOCK_BYTES % 2000) - 2)}\r\nbody\r\n`;
      expect(Buffer.byteLength(block) - "body\r\n".length).toBe(MAX_HEADER_BLOCK_BYTES);
      // What passes here the spool can read back: no 250 for a message later dead-lettered as unreadable.
      expect(parseMessageHead(Buffer.from(block, "latin1")).headerBytes).toBe(MAX_HEADER_BLOCK_BYTES);
      for (const content of [lines, field, block]) {
        for (const size of [1, 7, 65536]) if (content.length < 200_000 || size > 1) expect(scanChunked(content, size), `${content.slice(0, 12)} ${content.length} by ${size}`).toBeNull();
      }
    });

    it("refuses one line, one field byte or one block byte more, in any chunking", () => {
      const lines = `Subject: x\r\n${" y\r\n".repeat(MAX_HEADER_LINES)}\r\nbody\r\n`;
      const field = `Subject: ${"x".repeat(MAX_HEADER_FIELD_BYTES - 14)}\r\n y\r\n\r\nbody\r\n`;
      const block = `${line(2000).repeat(Math.floor(MAX_HEADER_BLOCK_BYTES / 2000))}${line((MAX_HEADER_BLOCK_BYTES % 2000) - 1)}\r\nbody\r\n`;
      // Without an empty line the whole content is header block.
      const noBody = line(2000).repeat(Math.ceil(MAX_HEADER_BLOCK_BYTES / 2000) + 1);
      for (const content of [lines, field, block, noBody]) {
        for (const size of [1, 7, 65536]) if (content.length < 200_000 || size > 1) expect(scanChunked(content, size)).toBe("header-limit");
      }
    });

    it("bounds the fields authentication parses tighter, whatever the case and chunking of their names", () => {
      /** A field of exactly `bytes`, folded into lines of about 100 bytes. */
      const field = (name: string, bytes: number): string => {
        const first = `${name}: x\r\n`;
        const rest = bytes - first.length;
        const fold = ` ${"w ".repeat(48)}\r\n`;
        return first + fold.repeat(Math.floor(rest / fold.length)) + ` ${"w".repeat((rest % fold.length) - 3)}\r\n`;
      };
      for (const name of ["Received", "from", "Return-Path", "DKIM-Signature", "RECEIVED "]) {
        expect(Buffer.byteLength(field(name, MAX_PARSED_FIELD_BYTES))).toBe(MAX_PARSED_FIELD_BYTES);
        for (const size of [1, 5, 65536]) {
          expect(scanChunked(`${field(name, MAX_PARSED_FIELD_BYTES)}\r\nbody\r\n`, size), name).toBeNull();
          expect(scanChunked(`${field(name, MAX_PARSED_FIELD_BYTES + 1)}\r\nbody\r\n`, size), name).toBe("header-limit");
        }
      }
      expect(scanChunked(`${field("X-Received", MAX_PARSED_FIELD_BYTES * 4)}\r\nbody\r\n`, 7)).toBeNull();
      expect(scanChunked(`X: y\r\n received: ${"w ".repeat(MAX_PARSED_FIELD_BYTES)}\r\n\r\nbody\r\n`, 7)).toBeNull();
    });

    it("refuses more Received fields than Postfix's hop count limit", () => {
      const received = "Received: from a (b [192.0.2.1]) by c; Thu, 1 Jan 2026 00:00:00 +0000\r\n";
      expect(scanChunked(`${received.repeat(MAX_RECEIVED_FIELDS)}\r\nbody\r\n`, 3)).toBeNull();
      expect(scanChunked(`${received.repeat(MAX_RECEIVED_FIELDS + 1)}\r\nbody\r\n`, 3)).toBe("header-limit");
    });

    it("counts bare-LF lines as the CRLF lines they are stored as, and never the body", () => {
      expect(scanChunked(`Subject: x\n${" y\n".repeat(MAX_HEADER_LINES)}\nbody\n`, 64)).toBe("header-limit");
      const longBody = `Subject: x\r\n\r\n${"z\r\n".repeat(MAX_HEADER_LINES * 2)}${"z".repeat(MAX_HEADER_BLOCK_BYTES * 2)}\r\n`;
      expect(scanChunked(longBody, 65536)).toBeNull();
    });
  });

  it("passes a chunk on as it is when nothing changes, judging a leading LF by the chunk before", () => {
    const scanner = new DataScanner(1_000);
    const chunk = Buffer.from("a\r\nb\r");
    expect(scanner.push(chunk)).toBe(chunk);
    expect(scanner.push(Buffer.from("\nx"))?.toString()).toBe("\nx");
    expect(scanner.push(Buffer.from("\ny"))?.toString()).toBe("\r\ny");
  });

  it("agrees with a reading of the whole content at once, for 5,000 random contents cut at random", () => {
    /** The content as one piece, after the CRLF of the DATA command: docs/behaviour.md §4 read literally. */
    const reference = (content: string): { out: string; violation: string | null } => {
      const wire = `\r\n${content}`;
      // A dot between line endings other than CRLF and CRLF; a CR at the very end awaits its next byte.
      const smuggling = /\r\.[\r\n]|\n\.\n|[^\r]\n\.\r|\n\.\r(?!\n|$)/.test(wire);
      if (smuggling) return { out: "", violation: "smuggling" };
      return { out: wire.replace(/(?<!\r)\n/g, "\r\n").slice(2), violation: null };
    };
    const pieces = ["\r", "\n", ".", "a", "\r\n", "..", "\r\n.\r\n"];
    let state = 7;
    const next = (): number => {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      return state / 4294967296;
    };
    for (let round = 0; round < 5_000; round++) {
      let content = "";
      const length = Math.floor(next() * 24);
      for (let i = 0; i < length; i++) content += pieces[Math.floor(next() * pieces.length)];
      const splits: number[] = [];
      for (let at = 1; at < content.length; at++) if (next() < 0.3) splits.push(at);
      const expected = reference(content);
      const actual = scan(content, splits);
      expect(expected.violation ? { out: "", violation: actual.violation } : actual, JSON.stringify({ content, splits })).toEqual(expected);
    }
  });
});
