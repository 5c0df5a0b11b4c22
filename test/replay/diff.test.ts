import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { loadRuleSetFile } from "../../src/config/rule-files.js";
import { diffResults } from "../../src/replay/diff.js";
import type { MessageChange } from "../../src/replay/diff.js";
import { replayFilesTwice, replayMessage } from "../../src/replay/replay.js";
import type { ReplaySettings } from "../../src/replay/replay.js";
import { identitiesFrom } from "../../src/rules/recipients.js";
import type { RuleSet } from "../../src/rules/model.js";

const fixtures = fileURLToPath(new URL("../fixtures/diff/", import.meta.url));
const corpus = join(fixtures, "corpus");
const receivedAt = new Date("2026-12-01T10:00:00Z");

function settings(ruleSet: RuleSet): ReplaySettings {
  return { ruleSet, filters: null, identities: identitiesFrom(["corp.test", "other.test"]), tls: false, clock: () => receivedAt };
}

let oldSet: RuleSet;
let newSet: RuleSet;
beforeAll(async () => {
  [oldSet, newSet] = await Promise.all([loadRuleSetFile(join(fixtures, "old.json")), loadRuleSetFile(join(fixtures, "new.json"))]);
});

async function changesOf(name: string, before: RuleSet, after: RuleSet): Promise<MessageChange[]> {
  const file = join(corpus, `${name}.eml`);
  const [a, b] = await Promise.all([replayMessage(file, settings(before)), replayMessage(file, settings(after))]);
  return diffResults(a, b);
}

describe("diffResults", () => {
  it("reports each edit of the rule set exactly once, with its kind", async () => {
    const expected: Record<string, MessageChange[]> = {
      added: [{ kind: "rules-matched", before: ["archive"], after: ["added", "archive"], added: ["added"], removed: [] }],
      removed: [{ kind: "rules-matched", before: ["remove-me", "archive"], after: ["archive"], added: [], removed: ["remove-me"] }],
      disabled: [{ kind: "rules-matched", before: ["disable-me", "archive"], after: ["archive"], added: [], removed: ["disable-me"] }],
      reordered: [
        { kind: "rules-matched", before: ["first", "second", "archive"], after: ["second", "first", "archive"], added: [], removed: [] },
      ],
      "moved-recipient": [
        {
          kind: "recipient",
          recipient: "old@other.test",
          before: "accepted",
          after: "550 5.1.1 Requested action not taken: mailbox unavailable",
        },
      ],
      param: [
        {
          kind: "action",
          rule: "param",
          change: "parameters",
          type: "SNS",
          params: [{ field: "TopicArn", before: "arn:aws:sns:us-east-1:123456789012:before", after: "arn:aws:sns:us-east-1:123456789012:after" }],
        },
      ],
      stop: [
        {
          kind: "stop",
          before: { rule: "stopper", action: 1, stop: "Stop" },
          after: { rule: "stopper", action: 0, stop: "Stop" },
        },
      ],
      tls: [{ kind: "tls", recipient: "tls@corp.test", before: "accepted", after: "530 5.7.0 Must issue a STARTTLS command first" }],
      unchanged: [],
    };
    const names = (await readdir(corpus)).map((file) => file.replace(/\.eml$/, "")).sort();
    expect(names).toEqual(Object.keys(expected).sort());
    for (const name of names) expect({ name, changes: await changesOf(name, oldSet, newSet) }).toEqual({ name, changes: expected[name] });
  });

  it("reports nothing for identical rule sets", async () => {
    for (const file of await readdir(corpus)) expect(await changesOf(file.replace(/\.eml$/, ""), oldSet, oldSet)).toEqual([]);
  });

  it("reports actions added to and removed from a rule that matches on both sides, with their parameters", async () => {
    const withActions = (actions: RuleSet["rules"][number]["actions"]): RuleSet => ({
      ...oldSet,
      rules: oldSet.rules.map((rule) => (rule.name === "param" ? { ...rule, actions } : rule)),
    });
    const sns = oldSet.rules.find((rule) => rule.name === "param")!.actions[0]!;
    const header = { type: "AddHeader" as const, params: { HeaderName: "X-Route", HeaderValue: "param" } };
    expect(await changesOf("param", withActions([sns]), withActions([sns, header]))).toEqual([
      { kind: "action", rule: "param", change: "added", type: "AddHeader", params: { HeaderName: "X-Route", HeaderValue: "param" } },
    ]);
    expect(await changesOf("param", withActions([sns, header]), withActions([header]))).toEqual([
      { kind: "action", rule: "param", change: "removed", type: "SNS", params: sns.params },
    ]);
  });

  it("replays each file once for both rule sets: the same envelope and message ID on both sides", async () => {
    const outcomes = [];
    for await (const outcome of replayFilesTwice([join(corpus, "param.eml"), join(corpus, "absent.eml")], settings(oldSet), settings(newSet))) {
      outcomes.push(outcome);
    }
    const [pair, missing] = outcomes;
    if (!pair || "error" in pair) throw new Error("param.eml did not replay");
    expect(pair.before.messageId).toBe(pair.after.messageId);
    expect(pair.before.envelope).toEqual(pair.after.envelope);
    expect(pair.before.trace?.rules.map((rule) => rule.name)).toEqual(["param", "archive"]);
    expect(missing).toEqual({ file: join(corpus, "absent.eml"), error: "no such file" });
  });
});
