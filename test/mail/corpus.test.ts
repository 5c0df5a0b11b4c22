import { readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { commonHeaders, destinationAddresses, envelopeFromHeaders, MessageParseError, readMessageHead } from "../../src/mail/index.js";

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
    const rejected: string[] = [];
    let parsedEml = 0;
    for (const file of files) {
      const name = relative(corpus, file);
      try {
        const head = await readMessageHead(file);
        commonHeaders(head.headers);
        destinationAddresses(head.headers);
        const envelope = envelopeFromHeaders(head.headers);
        expect(typeof envelope.mailFrom, name).toBe("string");
        expect(head.headerBytes, name).toBeLessThanOrEqual(head.size);
        if (file.endsWith(".eml")) parsedEml++;
      } catch (error) {
        if (!(error instanceof MessageParseError)) throw new Error(`${name}: ${String(error)}`, { cause: error });
        rejected.push(`${name}: ${error.message}`);
      }
    }
    console.log(rejected);
    // The corpus is real mail: every .eml in it has a header block.
    expect(parsedEml).toBe(files.filter((f) => f.endsWith(".eml")).length);
  });
});
