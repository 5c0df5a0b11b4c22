import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import type { RuleSet } from "../../src/rules/model.js";
import {
  EMPTY_STATE,
  ReceiptApiError,
  activeRuleSet,
  cloneReceiptRuleSet,
  createReceiptFilter,
  createReceiptRule,
  createReceiptRuleSet,
  deleteReceiptFilter,
  deleteReceiptRule,
  deleteReceiptRuleSet,
  describeReceiptRule,
  describeReceiptRuleSet,
  reorderReceiptRuleSet,
  setActiveReceiptRuleSet,
  setReceiptRulePosition,
  toDescribeJson,
  toReceiptRuleJson,
  updateReceiptRule,
} from "../../src/rules/store.js";
import type { ReceiptErrorCode, ReceiptState } from "../../src/rules/store.js";
import { parseRuleSet } from "../../src/rules/validate.js";

const NOW = new Date("2026-01-02T03:04:05.678Z");
const LATER = new Date("2026-02-03T04:05:06.789Z");
const TOPIC = "arn:aws:sns:us-east-1:123456789012:mail";

const rule = (Name: string, extra: Record<string, unknown> = {}) => ({ Name, Enabled: true, ...extra });
const filter = (Name: string, Policy = "Block", Cidr = "10.0.0.0/8") => ({ Name, IpFilter: { Policy, Cidr } });

/** A state with the set `main` holding rules named `ruleNames`, in that order. */
function withSet(...ruleNames: string[]): ReceiptState {
  let state = createReceiptRuleSet(EMPTY_STATE, "main", NOW);
  for (const name of ruleNames.toReversed()) state = createReceiptRule(state, "main", rule(name));
  return state;
}

const ruleNames = (state: ReceiptState, ruleSetName = "main"): string[] =>
  describeReceiptRuleSet(state, ruleSetName).rules.map((r) => r.name);

function apiError(operation: () => unknown): ReceiptApiError {
  try {
    operation();
  } catch (error) {
    if (error instanceof ReceiptApiError) return error;
    throw error;
  }
  throw new Error("expected a ReceiptApiError, but the operation succeeded");
}

function expectError(operation: () => unknown, code: ReceiptErrorCode, ...fragments: string[]): void {
  const error = apiError(operation);
  expect(error.code).toBe(code);
  for (const fragment of fragments) expect(error.message).toContain(fragment);
}

describe("rule order and lifecycle (docs/behaviour.md §1)", () => {
  it("CreateReceiptRule without After inserts at the front", () => {
    const state = createReceiptRule(withSet("a", "b"), "main", rule("new"));
    expect(ruleNames(state)).toEqual(["new", "a", "b"]);
  });

  it.each([
    ["a", ["a", "new", "b", "c"]],
    ["b", ["a", "b", "new", "c"]],
    ["c", ["a", "b", "c", "new"]],
  ])("CreateReceiptRule with After %s inserts right behind that rule", (after, expected) => {
    expect(ruleNames(createReceiptRule(withSet("a", "b", "c"), "main", rule("new"), after))).toEqual(expected);
  });

  it("SetReceiptRulePosition without After moves the rule to the front", () => {
    expect(ruleNames(setReceiptRulePosition(withSet("a", "b", "c"), "main", "c"))).toEqual(["c", "a", "b"]);
    expect(ruleNames(setReceiptRulePosition(withSet("a", "b", "c"), "main", "a"))).toEqual(["a", "b", "c"]);
  });

  it.each([
    ["a", "c", ["b", "c", "a"]],
    ["c", "a", ["a", "c", "b"]],
    ["b", "a", ["a", "b", "c"]],
    ["a", "b", ["b", "a", "c"]],
  ])("SetReceiptRulePosition moves %s right behind %s", (name, after, expected) => {
    expect(ruleNames(setReceiptRulePosition(withSet("a", "b", "c"), "main", name, after))).toEqual(expected);
  });

  it("UpdateReceiptRule keeps the rule's position and replaces the whole rule", () => {
    let state = withSet("a", "b", "c");
    state = updateReceiptRule(
      state,
      "main",
      rule("b", {
        TlsPolicy: "Require",
        Recipients: ["user@example.com"],
        Actions: [{ SNSAction: { TopicArn: TOPIC } }],
        ScanEnabled: true,
      }),
    );
    expect(ruleNames(state)).toEqual(["a", "b", "c"]);
    expect(describeReceiptRule(state, "main", "b")).toEqual({
      name: "b",
      enabled: true,
      tlsPolicy: "Require",
      recipients: ["user@example.com"],
      scanEnabled: true,
      actions: [{ type: "SNS", params: { TopicArn: TOPIC } }],
    });
    // What the new rule leaves out takes the SES default; nothing of the old rule survives.
    state = updateReceiptRule(state, "main", { Name: "b" });
    expect(ruleNames(state)).toEqual(["a", "b", "c"]);
    expect(describeReceiptRule(state, "main", "b")).toEqual({
      name: "b",
      enabled: false,
      tlsPolicy: "Optional",
      recipients: [],
      scanEnabled: false,
      actions: [],
    });
  });

  it("DeleteReceiptRule removes the rule", () => {
    expect(ruleNames(deleteReceiptRule(withSet("a", "b", "c"), "main", "b"))).toEqual(["a", "c"]);
  });

  it("DeleteReceiptRule of a missing rule in an existing set succeeds and changes nothing", () => {
    const state = withSet("a", "b");
    expect(deleteReceiptRule(state, "main", "missing")).toBe(state);
  });

  it("the active rule set cannot be deleted (CannotDelete)", () => {
    let state = setActiveReceiptRuleSet(withSet("a"), "main");
    expectError(() => deleteReceiptRuleSet(state, "main"), "CannotDelete", "main");
    state = setActiveReceiptRuleSet(state, null);
    state = deleteReceiptRuleSet(state, "main");
    expect(state.ruleSets.has("main")).toBe(false);
  });

  it("with no set active, activeRuleSet is null", () => {
    expect(activeRuleSet(EMPTY_STATE)).toBeNull();
    const state = withSet("a");
    expect(activeRuleSet(state)).toBeNull();
    const active = setActiveReceiptRuleSet(state, "main");
    expect(activeRuleSet(setActiveReceiptRuleSet(active, null))).toBeNull();
    expect(activeRuleSet(setActiveReceiptRuleSet(active, undefined))).toBeNull();
  });

  it("exactly one set is active: activating another replaces it", () => {
    let state = createReceiptRuleSet(withSet("a"), "other", NOW);
    state = setActiveReceiptRuleSet(state, "main");
    expect(activeRuleSet(state)?.name).toBe("main");
    state = setActiveReceiptRuleSet(state, "other");
    expect(activeRuleSet(state)?.name).toBe("other");
    expect(state.activeName).toBe("other");
    expect(deleteReceiptRuleSet(state, "main").ruleSets.has("main")).toBe(false);
  });

  it("the active set follows changes to its rules", () => {
    const state = createReceiptRule(setActiveReceiptRuleSet(withSet("a"), "main"), "main", rule("b"));
    expect(activeRuleSet(state)?.rules.map((r) => r.name)).toEqual(["b", "a"]);
  });
});

describe("rule sets", () => {
  it("CreateReceiptRuleSet creates an empty set stamped with the time passed in", () => {
    const state = createReceiptRuleSet(EMPTY_STATE, "main", NOW);
    expect(describeReceiptRuleSet(state, "main")).toEqual({
      name: "main",
      createdTimestamp: "2026-01-02T03:04:05.678Z",
      rules: [],
    });
  });

  it("lists sets in creation order", () => {
    let state = EMPTY_STATE;
    for (const name of ["b", "c", "a"]) state = createReceiptRuleSet(state, name, NOW);
    state = createReceiptRule(state, "c", rule("r"));
    expect([...state.ruleSets.keys()]).toEqual(["b", "c", "a"]);
  });

  it("a second set of the same name is AlreadyExists", () => {
    expectError(() => createReceiptRuleSet(withSet(), "main", NOW), "AlreadyExists", "main");
  });

  it("a 41st set is LimitExceeded", () => {
    let state = EMPTY_STATE;
    for (let i = 0; i < 40; i++) state = createReceiptRuleSet(state, `set${i}`, NOW);
    expectError(() => createReceiptRuleSet(state, "one-more", NOW), "LimitExceeded", "40");
    expectError(() => cloneReceiptRuleSet(state, "one-more", "set0", NOW), "LimitExceeded", "40");
    expect(createReceiptRuleSet(deleteReceiptRuleSet(state, "set7"), "one-more", NOW).ruleSets.size).toBe(40);
  });

  it("DeleteReceiptRuleSet deletes the set with its rules", () => {
    const state = deleteReceiptRuleSet(createReceiptRuleSet(withSet("a"), "other", NOW), "main");
    expect([...state.ruleSets.keys()]).toEqual(["other"]);
    expectError(() => describeReceiptRule(state, "main", "a"), "RuleSetDoesNotExist");
  });

  it("DeleteReceiptRuleSet of a missing set succeeds and changes nothing (the seed lists no RuleSetDoesNotExist)", () => {
    const state = withSet("a");
    expect(deleteReceiptRuleSet(state, "missing")).toBe(state);
  });

  it.each([
    ["SetActiveReceiptRuleSet", (s: ReceiptState) => setActiveReceiptRuleSet(s, "missing")],
    ["DescribeReceiptRuleSet", (s: ReceiptState) => describeReceiptRuleSet(s, "missing")],
    ["CloneReceiptRuleSet", (s: ReceiptState) => cloneReceiptRuleSet(s, "copy", "missing", NOW)],
    ["CreateReceiptRule", (s: ReceiptState) => createReceiptRule(s, "missing", rule("r"))],
    ["UpdateReceiptRule", (s: ReceiptState) => updateReceiptRule(s, "missing", rule("a"))],
    ["DeleteReceiptRule", (s: ReceiptState) => deleteReceiptRule(s, "missing", "a")],
    ["DescribeReceiptRule", (s: ReceiptState) => describeReceiptRule(s, "missing", "a")],
    ["SetReceiptRulePosition", (s: ReceiptState) => setReceiptRulePosition(s, "missing", "a")],
    ["ReorderReceiptRuleSet", (s: ReceiptState) => reorderReceiptRuleSet(s, "missing", ["a"])],
  ])("%s on a missing set is RuleSetDoesNotExist", (_, operation) => {
    expectError(() => operation(withSet("a")), "RuleSetDoesNotExist", "missing");
  });

  describe("CloneReceiptRuleSet", () => {
    const original = createReceiptRule(withSet("a", "b"), "main", rule("c", { Recipients: ["example.com"] }), "b");

    it("copies every rule in order, with its own CreatedTimestamp", () => {
      const state = cloneReceiptRuleSet(original, "copy", "main", LATER);
      expect(describeReceiptRuleSet(state, "copy")).toEqual({
        ...describeReceiptRuleSet(original, "main"),
        name: "copy",
        createdTimestamp: LATER.toISOString(),
      });
      expect(describeReceiptRuleSet(state, "main")).toEqual(describeReceiptRuleSet(original, "main"));
    });

    it("leaves the two sets independent of each other", () => {
      let state = cloneReceiptRuleSet(original, "copy", "main", LATER);
      state = updateReceiptRule(state, "main", rule("a", { Recipients: ["changed.example"] }));
      state = deleteReceiptRule(state, "main", "b");
      state = createReceiptRule(state, "copy", rule("only-in-copy"));
      state = setReceiptRulePosition(state, "copy", "a", "c");
      expect(ruleNames(state, "main")).toEqual(["a", "c"]);
      expect(ruleNames(state, "copy")).toEqual(["only-in-copy", "b", "c", "a"]);
      expect(describeReceiptRule(state, "copy", "a").recipients).toEqual([]);
      expect(describeReceiptRule(state, "main", "a").recipients).toEqual(["changed.example"]);
    });

    it("a clone under an existing name is AlreadyExists", () => {
      const state = createReceiptRuleSet(original, "copy", NOW);
      expectError(() => cloneReceiptRuleSet(state, "copy", "main", NOW), "AlreadyExists", "copy");
    });
  });
});

describe("rules", () => {
  it("a rule is validated like a rule of a rule set file, issues named from Rule", () => {
    const state = withSet("a");
    expectError(
      () => createReceiptRule(state, "main", rule("r", { Actions: [{ S3Action: { BucketName: "Bad_Bucket" } }] })),
      "InvalidParameterValue",
      "Rule.Actions[0].S3Action.BucketName: expected an S3 bucket name",
    );
    expectError(() => createReceiptRule(state, "main", { Enabled: true }), "InvalidParameterValue", "Rule.Name: missing");
    expectError(
      () => updateReceiptRule(state, "main", rule("a", { TlsPolicy: "Always" })),
      "InvalidParameterValue",
      "Rule.TlsPolicy: expected one of",
    );
    expectError(() => createReceiptRule(state, "main", "r"), "InvalidParameterValue", "Rule: expected an object");
    expectError(() => createReceiptRule(state, "main", undefined), "InvalidParameterValue", "Rule: expected an object");
  });

  it("reports every issue of a rule in one message", () => {
    const error = apiError(() => createReceiptRule(withSet(), "main", { Name: "-r", Enabled: "yes" }));
    expect(error.code).toBe("InvalidParameterValue");
    expect(error.message).toMatch(/^Rule\.Name: .*; Rule\.Enabled: /);
  });

  it("a second rule of the same name is AlreadyExists", () => {
    expectError(() => createReceiptRule(withSet("a", "b"), "main", rule("b")), "AlreadyExists", "b");
  });

  it("a rule of the same name in another set is fine", () => {
    const state = createReceiptRule(createReceiptRuleSet(withSet("a"), "other", NOW), "other", rule("a"));
    expect(ruleNames(state, "other")).toEqual(["a"]);
  });

  it("CreateReceiptRule after a missing rule is RuleDoesNotExist", () => {
    expectError(() => createReceiptRule(withSet("a"), "main", rule("r"), "missing"), "RuleDoesNotExist", "missing");
  });

  it("the 201st rule of a set is LimitExceeded", () => {
    let state = withSet();
    for (let i = 0; i < 200; i++) state = createReceiptRule(state, "main", rule(`r${i}`));
    expectError(() => createReceiptRule(state, "main", rule("one-more")), "LimitExceeded", "200");
    expect(ruleNames(deleteReceiptRule(state, "main", "r0"))).toHaveLength(199);
  });

  it.each([
    ["Actions", 10, Array.from({ length: 11 }, () => ({ StopAction: { Scope: "RuleSet" } }))],
    ["Recipients", 100, Array.from({ length: 101 }, (_, i) => `user${i}@example.com`)],
  ])("a rule with more %s than %i is LimitExceeded", (key, max, values) => {
    const state = withSet("a");
    expectError(() => createReceiptRule(state, "main", rule("r", { [key]: values })), "LimitExceeded", `Rule.${key}`);
    expectError(() => updateReceiptRule(state, "main", rule("a", { [key]: values })), "LimitExceeded", `${max}`);
    expect(ruleNames(createReceiptRule(state, "main", rule("r", { [key]: values.slice(0, max) })))).toEqual(["r", "a"]);
  });

  it("UpdateReceiptRule of a missing rule is RuleDoesNotExist", () => {
    expectError(() => updateReceiptRule(withSet("a"), "main", rule("missing")), "RuleDoesNotExist", "missing");
  });

  it("DescribeReceiptRule gives the rule, or RuleDoesNotExist", () => {
    const state = createReceiptRule(withSet("a"), "main", rule("r", { Recipients: ["example.com"] }));
    expect(describeReceiptRule(state, "main", "r")).toEqual({
      name: "r",
      enabled: true,
      tlsPolicy: "Optional",
      recipients: ["example.com"],
      scanEnabled: false,
      actions: [],
    });
    expectError(() => describeReceiptRule(state, "main", "missing"), "RuleDoesNotExist", "missing");
  });

  it("SetReceiptRulePosition of a missing rule, or after one, is RuleDoesNotExist", () => {
    const state = withSet("a", "b");
    expectError(() => setReceiptRulePosition(state, "main", "missing"), "RuleDoesNotExist", "missing");
    expectError(() => setReceiptRulePosition(state, "main", "a", "missing"), "RuleDoesNotExist", "missing");
  });

  it("SetReceiptRulePosition after the rule itself is InvalidParameterValue", () => {
    expectError(() => setReceiptRulePosition(withSet("a", "b"), "main", "b", "b"), "InvalidParameterValue", "itself");
  });

  describe("ReorderReceiptRuleSet", () => {
    const state = withSet("a", "b", "c");

    it("puts the rules in the order given", () => {
      expect(ruleNames(reorderReceiptRuleSet(state, "main", ["c", "a", "b"]))).toEqual(["c", "a", "b"]);
      expect(ruleNames(reorderReceiptRuleSet(withSet(), "main", []))).toEqual([]);
    });

    it("a name not in the set is RuleDoesNotExist", () => {
      expectError(() => reorderReceiptRuleSet(state, "main", ["c", "a", "b", "d"]), "RuleDoesNotExist", "d");
    });

    it("must position every rule of the set (InvalidParameterValue)", () => {
      expectError(() => reorderReceiptRuleSet(state, "main", ["c", "a"]), "InvalidParameterValue", "missing: b");
    });

    it("must name each rule once (InvalidParameterValue)", () => {
      expectError(() => reorderReceiptRuleSet(state, "main", ["a", "b", "c", "a"]), "InvalidParameterValue", "a is named twice");
    });
  });
});

describe("names", () => {
  const longest = `a${"b".repeat(61)}c`;

  it.each(["", "-a", "a-", ".a", "a_", "a b", "a/b", "ä", `${longest}d`])("%j is InvalidParameterValue", (name) => {
    expectError(() => createReceiptRuleSet(EMPTY_STATE, name, NOW), "InvalidParameterValue", "RuleSetName: expected a name");
  });

  it.each(["a", "A9", "a.b_c-d", longest])("%j is a valid name", (name) => {
    expect(createReceiptRuleSet(EMPTY_STATE, name, NOW).ruleSets.has(name)).toBe(true);
  });

  it.each([
    ["OriginalRuleSetName", (s: ReceiptState) => cloneReceiptRuleSet(s, "copy", "bad name", NOW)],
    ["RuleSetName", (s: ReceiptState) => deleteReceiptRuleSet(s, "bad name")],
    ["RuleSetName", (s: ReceiptState) => setActiveReceiptRuleSet(s, "bad name")],
    ["After", (s: ReceiptState) => createReceiptRule(s, "main", rule("r"), "bad name")],
    ["RuleName", (s: ReceiptState) => deleteReceiptRule(s, "main", "bad name")],
    ["RuleName", (s: ReceiptState) => setReceiptRulePosition(s, "main", "bad name")],
    ["After", (s: ReceiptState) => setReceiptRulePosition(s, "main", "a", "bad name")],
    ["RuleNames[1]", (s: ReceiptState) => reorderReceiptRuleSet(s, "main", ["a", "bad name"])],
    ["RuleName", (s: ReceiptState) => describeReceiptRule(s, "main", "bad name")],
    ["FilterName", (s: ReceiptState) => deleteReceiptFilter(s, "bad name")],
  ])("an invalid %s is InvalidParameterValue, also where a missing one would not be an error", (parameter, operation) => {
    expectError(() => operation(withSet("a")), "InvalidParameterValue", `${parameter}: expected a name`);
  });
});

describe("IP filters", () => {
  it("CreateReceiptFilter adds the filter after the others", () => {
    let state = createReceiptFilter(EMPTY_STATE, filter("b", "Block", "10.0.0.0/8"));
    state = createReceiptFilter(state, filter("a", "Allow", "2001:db8::1"));
    expect(state.filters).toEqual([
      { name: "b", policy: "Block", cidr: "10.0.0.0/8" },
      { name: "a", policy: "Allow", cidr: "2001:db8::1" },
    ]);
  });

  it("a filter is validated, issues named from Filter", () => {
    expectError(
      () => createReceiptFilter(EMPTY_STATE, filter("f", "Block", "10.0.0.0/33")),
      "InvalidParameterValue",
      "Filter.IpFilter.Cidr: expected an IPv4 or IPv6 address",
    );
    expectError(() => createReceiptFilter(EMPTY_STATE, { Name: "f" }), "InvalidParameterValue", "Filter.IpFilter: missing");
  });

  it("a second filter of the same name is AlreadyExists", () => {
    const state = createReceiptFilter(EMPTY_STATE, filter("f"));
    expectError(() => createReceiptFilter(state, filter("f", "Allow", "10.1.0.0/16")), "AlreadyExists", "f");
  });

  it("the 101st filter is LimitExceeded", () => {
    let state = EMPTY_STATE;
    for (let i = 0; i < 100; i++) state = createReceiptFilter(state, filter(`f${i}`, "Block", `10.0.${i}.0/24`));
    expectError(() => createReceiptFilter(state, filter("one-more")), "LimitExceeded", "100");
    expect(createReceiptFilter(deleteReceiptFilter(state, "f3"), filter("one-more")).filters).toHaveLength(100);
  });

  it("DeleteReceiptFilter removes the filter; a missing one succeeds and changes nothing", () => {
    const state = createReceiptFilter(createReceiptFilter(EMPTY_STATE, filter("a")), filter("b"));
    expect(deleteReceiptFilter(state, "a").filters.map((f) => f.name)).toEqual(["b"]);
    expect(deleteReceiptFilter(state, "missing")).toBe(state);
  });
});

describe("immutability", () => {
  it("never changes a state it was given, and every state, set, rule and filter is frozen", () => {
    const before = createReceiptFilter(setActiveReceiptRuleSet(withSet("a", "b"), "main"), filter("f"));
    const snapshot = structuredClone({ ...before, ruleSets: [...before.ruleSets] });
    const after = [
      (s: ReceiptState) => createReceiptRule(s, "main", rule("c"), "a"),
      (s: ReceiptState) => updateReceiptRule(s, "main", rule("a", { Enabled: false })),
      (s: ReceiptState) => setReceiptRulePosition(s, "main", "a", "b"),
      (s: ReceiptState) => reorderReceiptRuleSet(s, "main", ["b", "c", "a"]),
      (s: ReceiptState) => deleteReceiptRule(s, "main", "b"),
      (s: ReceiptState) => cloneReceiptRuleSet(s, "copy", "main", NOW),
      (s: ReceiptState) => setActiveReceiptRuleSet(s, "copy"),
      (s: ReceiptState) => deleteReceiptRuleSet(s, "main"),
      (s: ReceiptState) => createReceiptFilter(s, filter("g")),
      (s: ReceiptState) => deleteReceiptFilter(s, "f"),
    ].reduce((state, operation) => {
      const next = operation(state);
      expect(next).not.toBe(state);
      return next;
    }, before);

    expect({ ...before, ruleSets: [...before.ruleSets] }).toEqual(snapshot);
    for (const state of [EMPTY_STATE, before, after]) {
      expect(Object.isFrozen(state)).toBe(true);
      expect(Object.isFrozen(state.filters)).toBe(true);
      for (const f of state.filters) expect(Object.isFrozen(f)).toBe(true);
      for (const ruleSet of state.ruleSets.values()) {
        expect(Object.isFrozen(ruleSet)).toBe(true);
        expect(Object.isFrozen(ruleSet.rules)).toBe(true);
        for (const r of ruleSet.rules) expect(Object.isFrozen(r)).toBe(true);
      }
    }
    expect(EMPTY_STATE).toEqual({ ruleSets: new Map(), activeName: null, filters: [] });
  });

  it("a rule set taken from a state stays as it was while the state moves on", () => {
    const state = setActiveReceiptRuleSet(withSet("a"), "main");
    const snapshot = activeRuleSet(state) as RuleSet;
    updateReceiptRule(createReceiptRule(state, "main", rule("b")), "main", rule("a", { Enabled: false }));
    expect(snapshot.rules.map((r) => [r.name, r.enabled])).toEqual([["a", true]]);
  });
});

describe("ReceiptApiError", () => {
  it("is an Error carrying the SES error code", () => {
    const error = apiError(() => setActiveReceiptRuleSet(EMPTY_STATE, "missing"));
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe("ReceiptApiError");
    expect(error.code).toBe("RuleSetDoesNotExist");
    expect(error.message).toBe("Rule set does not exist: missing");
  });
});

describe("toDescribeJson", () => {
  const exampleText = readFileSync(new URL("../../rules/example.json", import.meta.url), "utf8");
  const example = JSON.parse(exampleText) as unknown;

  function parsed(doc: unknown): RuleSet {
    const result = parseRuleSet(doc);
    if (!result.ok) throw new Error(JSON.stringify(result.issues));
    return result.value;
  }

  it("prints rules/example.json back exactly, key order included", () => {
    expect(JSON.stringify(toDescribeJson(parsed(example)))).toBe(JSON.stringify(example));
  });

  it("round trips through parseRuleSet", () => {
    const ruleSet = parsed(example);
    expect(parsed(toDescribeJson(ruleSet))).toEqual(ruleSet);
  });

  it("round trips a set built through the API, defaults spelled out", () => {
    let state = createReceiptRuleSet(EMPTY_STATE, "main", NOW);
    state = createReceiptRule(state, "main", { Name: "bare" });
    state = createReceiptRule(state, "main", rule("full", { Recipients: [".example.com"], ScanEnabled: true }), "bare");
    const ruleSet = describeReceiptRuleSet(state, "main");
    const json = toDescribeJson(ruleSet);
    expect(json).toStrictEqual({
      Metadata: { Name: "main", CreatedTimestamp: "2026-01-02T03:04:05.678Z" },
      Rules: [
        { Name: "bare", Enabled: false, TlsPolicy: "Optional", Actions: [], ScanEnabled: false },
        {
          Name: "full",
          Enabled: true,
          TlsPolicy: "Optional",
          Recipients: [".example.com"],
          Actions: [],
          ScanEnabled: true,
        },
      ],
    });
    expect(parsed(json)).toEqual(ruleSet);
  });

  it("leaves CreatedTimestamp out when the set has none", () => {
    expect(toDescribeJson({ name: "hand-written", rules: [] })).toStrictEqual({
      Metadata: { Name: "hand-written" },
      Rules: [],
    });
  });

  it("gives copies that cannot change the frozen model", () => {
    const ruleSet = parsed(example);
    const json = toReceiptRuleJson(ruleSet.rules[0] as (typeof ruleSet.rules)[number]);
    json.Recipients?.push("more@example.com");
    (json.Actions?.[0]?.S3Action ?? { BucketName: "" }).BucketName = "changed";
    expect(ruleSet.rules[0]?.recipients).toEqual(["abuse@example.org"]);
    expect(ruleSet.rules[0]?.actions[0]?.params).toEqual(expect.objectContaining({ BucketName: "receiptd-abuse" }));
  });
});
