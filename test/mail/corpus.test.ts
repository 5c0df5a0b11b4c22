import { readdirSync, statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { commonHeaders, destinationAddresses, envelopeFromHeaders, MessageParseError, parseMessageHead, readMessageHead } from "../../src/mail/index.js";

const corpus = resolve(dirname(fileURLToPath(import.meta.url)), "../../../shared/corpus");
const present = statSync(corpus, { throwIfNoEntry: false })?.isDirectory() ?? false;

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((entry) => (entry.isDirectory() ? walk(join(dir, entry.name)) : [join(dir, entry.name)]))
    .sort();
}

describe.skipIf(!present)("shared message corpus", () => {
  it("parses every file or rejects it with a MessageParseError", async () => {
    const files = walk(corpus);
    expect(files.length).toBeGreaterThan(0);
    const rejectedEml: string[] = [];
    for (const file of files) {
      const name = relative(corpus, file);
      const bytes = await readFile(file);
      try {
        const head = await readMessageHead(file);
        expect(parseMessageHead(bytes), name).toEqual(head);
        commonHeaders(head.headers);
        destinationAddresses(head.headers);
        const envelope = envelopeFromHeaders(head.headers);
        expect(typeof envelope.mailFrom, name).toBe("string");
        expect(head.headerBytes, name).toBeLessThanOrEqual(head.size);
      } catch (error) {
        if (!(error instanceof MessageParseError)) throw new Error(`${name}: ${String(error)}`, { cause: error });
        expect(() => parseMessageHead(bytes), name).toThrow(error.message);
        if (file.endsWith(".eml")) rejectedEml.push(`${name}: ${error.message}`);
      }
    }
    // The .eml files are real mail, each with a header block; only the other files may be rejected.
    expect(rejectedEml).toEqual([]);
  });
});
