import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { receiptd } from "../helpers/cli.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
const OLD = "test/fixtures/diff/old.json";
const NEW = "test/fixtures/diff/new.json";
const CORPUS = "test/fixtures/diff/corpus";

const jsonLines = (stdout: string) =>
  stdout
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as { file: string; messageId: string; changes: { kind: string }[] });

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "receiptd-diff-"));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe("receiptd diff", () => {
  it("reports nothing and exits 0 when the rule sets are the same", async () => {
    const { code, stdout } = await receiptd("diff", OLD, OLD, CORPUS, "samples");
    expect(code).toBe(0);
    expect(stdout).toBe("15 message(s) compared: 0 changed, 0 unreadable\n");
    const json = await receiptd("diff", "rules/example.json", "rules/example.json", "samples", "--json");
    expect(json).toMatchObject({ code: 0, stdout: "" });
  });

  it("exits 1 and prints one JSON object per changed message, each change once with its kind", async () => {
    const { code, stdout } = await receiptd("diff", OLD, NEW, CORPUS, "samples", "--json");
    expect(code).toBe(1);
    const lines = jsonLines(stdout);
    for (const line of lines) {
      expect(Object.keys(line)).toEqual(["file", "messageId", "changes"]);
      expect(line.messageId).toMatch(/^[0-9a-v]{40}$/);
    }
    const kinds = Object.fromEntries(lines.map((line) => [line.file.replace(`${CORPUS}/`, ""), line.changes.map((c) => c.kind)]));
    expect(kinds).toEqual({
      "added.eml": ["rules-matched"],
      "disabled.eml": ["rules-matched"],
      "moved-recipient.eml": ["recipient"],
      "param.eml": ["action"],
      "removed.eml": ["rules-matched"],
      "reordered.eml": ["rules-matched"],
      "stop.eml": ["stop"],
      "tls.eml": ["tls"],
    });
  });

  it("prints the changes and a summary by kind and by rule", async () => {
    const { code, stdout } = await receiptd("diff", OLD, NEW, join(CORPUS, "param.eml"), join(CORPUS, "reordered.eml"));
    expect(code).toBe(1);
    expect(stdout).toContain(
      "  action in rule param: SNS TopicArn: arn:aws:sns:us-east-1:123456789012:before -> arn:aws:sns:us-east-1:123456789012:after\n",
    );
    expect(stdout).toContain("  rules matched: first, second, archive -> second, first, archive (reordered)\n");
    expect(stdout).toMatch(
      new RegExp(
        "\n2 message\\(s\\) compared: 2 changed, 0 unreadable\n" +
          "changes \\(messages\\): recipient 0, tls 0, rules-matched 1, action 1, stop 0\n" +
          "rules involved \\(messages\\):\n  first: 1\n  param: 1\n  second: 1\n$",
      ),
    );
  });

  it("uses the identities of both rule sets for both sides, unless --identity names them", async () => {
    // Without its rule for old@other.test, no rule of the new set names other.test: the address
    // is still a verified identity (account state), so the answer is "mailbox unavailable", not
    // "relaying denied".
    const rules = JSON.parse(await readFile(join(root, OLD), "utf8")) as { Rules: { Name: string }[] };
    const withoutOther = join(scratch, "without-other.json");
    await writeFile(withoutOther, JSON.stringify({ ...rules, Rules: rules.Rules.filter((rule) => rule.Name !== "moved-recipient") }));
    const union = await receiptd("diff", OLD, withoutOther, join(CORPUS, "moved-recipient.eml"), "--json");
    expect(union.code).toBe(1);
    expect(jsonLines(union.stdout)[0]?.changes).toEqual([
      { kind: "recipient", recipient: "old@other.test", before: "accepted", after: "550 5.1.1 Requested action not taken: mailbox unavailable" },
    ]);
    // Named identities without other.test: relaying is denied on both sides alike.
    const named = await receiptd("diff", OLD, withoutOther, join(CORPUS, "moved-recipient.eml"), "--identity", "corp.test");
    expect(named.code).toBe(0);
  });

  it("exits 3 when a file cannot be read, and 2 on bad usage", async () => {
    const unreadable = await receiptd("diff", OLD, OLD, join(scratch, "absent.eml"));
    expect(unreadable.code).toBe(3);
    expect(unreadable.stdout).toContain("error: no such file");
    expect((await receiptd("diff", OLD, NEW)).code).toBe(2);
    expect((await receiptd("diff", OLD, NEW, CORPUS, "--bogus")).code).toBe(2);
    expect((await receiptd("diff", OLD, NEW, CORPUS, "--client-ip", "nope")).code).toBe(2);
    const lambda = await receiptd("diff", OLD, NEW, CORPUS, "--lambda-result", "arn:aws:lambda:us-east-1:1:function:none=STOP_RULE");
    expect(lambda.code).toBe(2);
    expect(lambda.stderr).toContain('rule set "old-rules" or "new-rules"');
    const broken = join(scratch, "broken.json");
    await writeFile(broken, '{"Rules": [{"Name": ""}]}');
    expect((await receiptd("diff", OLD, broken, CORPUS)).code).toBe(2);
  });
});
