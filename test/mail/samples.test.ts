import { readdir, readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { commonHeaders, envelopeFromHeaders, parseMessageHead } from "../../src/mail/index.js";

const dir = new URL("../../samples/", import.meta.url);
const names = (await readdir(dir)).filter((name) => name.endsWith(".eml")).sort();

describe("samples", () => {
  it("has the example messages", () => {
    expect(names).toEqual(expect.arrayContaining(["bare-lf.eml", "many-recipients.eml", "multipart.eml", "non-ascii.eml", "plain.eml"]));
  });

  it("keeps git from converting line endings", async () => {
    expect(await readFile(new URL(".gitattributes", dir), "utf8")).toContain("*.eml -text");
  });

  it.each(names)("%s has exact line endings and the basic headers", async (name) => {
    const bytes = await readFile(new URL(name, dir));
    const text = bytes.toString("latin1");
    if (name === "bare-lf.eml") expect(text).not.toContain("\r");
    else expect(text.replace(/\r\n/g, "")).not.toMatch(/[\r\n]/);
    const head = parseMessageHead(bytes);
    const present = new Set(head.headers.map((h) => h.name.toLowerCase()));
    for (const required of ["to", "date", "message-id", "subject"]) expect(present, required).toContain(required);
    expect(present.has("return-path") || present.has("from")).toBe(true);
    expect(head.headerBytes).toBeLessThan(bytes.length);
    const common = commonHeaders(head.headers);
    expect(common.subject).toBeTruthy();
    expect(envelopeFromHeaders(head.headers).recipients.length).toBeGreaterThan(0);
  });
});
