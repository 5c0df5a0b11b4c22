import { describe, expect, it } from "vitest";
import { recordingExecutor } from "../../src/actions/record.js";
import { evaluate } from "../../src/rules/evaluate.js";
import type { ActionExecutor, ActionOutcome } from "../../src/rules/executor.js";
import type { Envelope, RuleSet } from "../../src/rules/model.js";
import { identitiesFrom } from "../../src/rules/recipients.js";
import { addHeader, bounce, lambda, rule, ruleSet, s3, sns, stop, workmail } from "../helpers/rules.js";

const identities = identitiesFrom(["example.com", "example.org"]);
const MESSAGE_ID = "0123456789abcdefghijklmnopqrstuv01234567";

function run(set: RuleSet, envelope: Partial<Envelope> = {}, executor: ActionExecutor<null> = recordingExecutor<null>()) {
  return evaluate(
    {
      ruleSet: set,
      identities,
      envelope: { mailFrom: "sender@example.net", recipients: ["info@example.com"], ...envelope },
      messageId: MESSAGE_ID,
      message: null,
    },
    executor,
  );
}

const summary = (trace: Awaited<ReturnType<typeof run>>) =>
  trace.rules.map((r) => `${r.name}:${r.actions.map((a) => `${a.type}=${a.outcome}`).join(",")}${r.stop ? `!${r.stop}` : ""}`);

describe("evaluation of one message (docs/behaviour.md §1 and 3)", () => {
  it("runs matching rules in rule-set order and actions in rule order", async () => {
    const executor = recordingExecutor<null>();
    const trace = await run(
      ruleSet(rule("first", ["example.com"], [s3("b1"), sns("arn:aws:sns:us-east-1:123456789012:t")]), rule("second", [], [s3("b2")])),
      {},
      executor,
    );
    expect(summary(trace)).toEqual(["first:S3=done,SNS=done", "second:S3=done"]);
    expect(executor.calls.map((c) => `${c.rule}/${c.type}`)).toEqual(["first/S3", "first/SNS", "second/S3"]);
    expect(trace.end).toBe("completed");
  });

  it("skips disabled rules and rules matching no recipient", async () => {
    const trace = await run(
      ruleSet(
        rule("off", ["example.com"], [s3("b")], { enabled: false }),
        rule("elsewhere", ["example.org"], [s3("b")]),
        rule("on", ["info@example.com"], [s3("b")]),
      ),
    );
    expect(trace.rules.map((r) => r.name)).toEqual(["on"]);
  });

  it("evaluates once per message: each matching rule runs once with only the recipients it matched", async () => {
    const executor = recordingExecutor<null>();
    const trace = await run(
      ruleSet(rule("com", ["example.com"], [s3("b")]), rule("org", [".example.org", "a@example.org"], [s3("c")])),
      { recipients: ["info@example.com", "a@example.org", "b@example.com", "x@sub.example.org"] },
      executor,
    );
    expect(trace.rules.map((r) => [r.name, r.recipients])).toEqual([
      ["com", ["info@example.com", "b@example.com"]],
      ["org", ["a@example.org", "x@sub.example.org"]],
    ]);
    expect(executor.calls).toHaveLength(2);
    expect(executor.calls[1]!.recipients).toEqual(["a@example.org", "x@sub.example.org"]);
  });

  it("Stop ends evaluation for the whole message; the rest of its rule is skipped", async () => {
    const executor = recordingExecutor<null>();
    const trace = await run(
      ruleSet(rule("a", [], [s3("b"), stop(), sns("arn:aws:sns:us-east-1:123456789012:t")]), rule("b", [], [s3("never")])),
      {},
      executor,
    );
    expect(summary(trace)).toEqual(["a:S3=done,Stop=done,SNS=skipped!Stop"]);
    expect(trace.end).toBe("stopped");
    expect(executor.calls.map((c) => c.type)).toEqual(["S3", "Stop"]);
  });

  describe("RequestResponse Lambda dispositions", () => {
    const fn = "arn:aws:lambda:us-east-1:123456789012:function:filter";
    const set = ruleSet(rule("a", [], [lambda(fn, "RequestResponse"), s3("rest-of-a")]), rule("b", [], [s3("next-rule")]));
    const withResult = (result: string) => recordingExecutor<null>({ lambdaResults: { [fn]: result } });

    it.each([
      ["STOP_RULE", ["a:Lambda=done,S3=skipped!STOP_RULE", "b:S3=done"], "completed"],
      ["stop_rule", ["a:Lambda=done,S3=skipped!STOP_RULE", "b:S3=done"], "completed"],
      ["STOP_RULE_SET", ["a:Lambda=done,S3=skipped!STOP_RULE_SET"], "stopped"],
      ["Stop_Rule_Set", ["a:Lambda=done,S3=skipped!STOP_RULE_SET"], "stopped"],
      ["CONTINUE", ["a:Lambda=done,S3=done", "b:S3=done"], "completed"],
      ["something-else", ["a:Lambda=done,S3=done", "b:S3=done"], "completed"],
    ])("%s", async (disposition, expected, end) => {
      const trace = await run(set, {}, withResult(disposition));
      expect(summary(trace)).toEqual(expected);
      expect(trace.end).toBe(end);
      expect(trace.rules[0]!.actions[0]!.disposition).toBe(disposition);
    });

    it("a missing or null result continues", async () => {
      const trace = await run(set);
      expect(summary(trace)).toEqual(["a:Lambda=done,S3=done", "b:S3=done"]);
      expect(trace.rules[0]!.actions[0]!.disposition).toBeNull();
    });

    it("an Event invocation never changes the flow, whatever the function returns", async () => {
      const eventSet = ruleSet(rule("a", [], [lambda(fn, "Event"), s3("x")]), rule("b", [], [s3("y")]));
      const executor: ActionExecutor<null> = {
        ...recordingExecutor<null>(),
        Lambda: async () => ({ status: "done", disposition: "STOP_RULE_SET" }),
      };
      const trace = await run(eventSet, {}, executor);
      expect(summary(trace)).toEqual(["a:Lambda=done,S3=done", "b:S3=done"]);
      expect(trace.rules[0]!.actions[0]!.disposition).toBeUndefined();
    });
  });

  it("AddHeader prepends, and every later action in this and later rules sees the change", async () => {
    const executor = recordingExecutor<null>();
    const trace = await run(
      ruleSet(
        rule("a", [], [s3("before"), addHeader("X-First", "1"), s3("after")]),
        rule("b", [], [addHeader("X-Second", "2"), sns("arn:aws:sns:us-east-1:123456789012:t")]),
      ),
      {},
      executor,
    );
    const seen = executor.calls.map((c) => c.prependedHeaders.map((h) => h.name));
    expect(seen).toEqual([[], ["X-First"], ["X-First"], ["X-Second", "X-First"], ["X-Second", "X-First"]]);
    expect(trace.prependedHeaders).toEqual([
      { name: "X-Second", value: "2" },
      { name: "X-First", value: "1" },
    ]);
  });

  it("AddHeader goes above the headers the engine prepended on receipt", async () => {
    const trace = await evaluate(
      {
        ruleSet: ruleSet(rule("a", [], [addHeader("X-Tag", "t")])),
        identities,
        envelope: { mailFrom: "s@example.net", recipients: ["info@example.com"] },
        messageId: MESSAGE_ID,
        message: null,
        prependedHeaders: [{ name: "Return-Path", value: "<s@example.net>" }],
      },
      recordingExecutor<null>(),
    );
    expect(trace.prependedHeaders.map((h) => h.name)).toEqual(["X-Tag", "Return-Path"]);
  });

  it("Bounce does not stop evaluation and never addresses the null sender", async () => {
    const set = ruleSet(rule("a", [], [bounce(), s3("kept")]), rule("b", [], [workmail()]));
    const normal = await run(set, { mailFrom: "sender@example.net" });
    expect(summary(normal)).toEqual(["a:Bounce=done,S3=done", "b:WorkMail=done"]);
    expect(normal.rules[0]!.actions[0]!.detail).toMatchObject({ dsnTo: "sender@example.net", reply: "550 5.1.1" });
    const nullSender = await run(set, { mailFrom: "" });
    expect(nullSender.rules[0]!.actions[0]!.detail).toMatchObject({ dsnTo: null });
  });

  it("an action with a TopicArn also notifies that topic; the SNS action is its own notification", async () => {
    const topic = "arn:aws:sns:us-east-1:123456789012:notify";
    const trace = await run(
      ruleSet(rule("a", [], [{ type: "S3", params: { BucketName: "b", TopicArn: topic } }, sns(topic), s3("plain")])),
    );
    const details = trace.rules[0]!.actions.map((a) => a.detail);
    expect(details[0]).toMatchObject({ notification: { topicArn: topic } });
    expect(details[1]).not.toHaveProperty("notification");
    expect(details[2]).not.toHaveProperty("notification");
  });

  it("S3 object key is the prefix followed directly by the message ID", async () => {
    const trace = await run(ruleSet(rule("a", [], [s3("b", "inbox/"), s3("b", "raw"), s3("b")])));
    expect(trace.rules[0]!.actions.map((a) => a.detail?.objectKey)).toEqual([
      `inbox/${MESSAGE_ID}`,
      `raw${MESSAGE_ID}`,
      MESSAGE_ID,
    ]);
  });

  it("a failed action abandons the rest of the evaluation", async () => {
    const failing: ActionExecutor<null> = {
      ...recordingExecutor<null>(),
      S3: async () => ({ status: "failed", failure: "permanent", error: "NoSuchBucket" }),
    };
    const trace = await run(ruleSet(rule("a", [], [s3("missing"), addHeader("X", "y")]), rule("b", [], [s3("b")])), {}, failing);
    expect(trace.end).toBe("failed");
    expect(summary(trace)).toEqual(["a:S3=failed,AddHeader=skipped"]);
    expect(trace.rules[0]!.actions[0]).toMatchObject({ failure: "permanent", error: "NoSuchBucket" });
  });

  it("resumes at the first action without a recorded outcome, replaying flow and header edits", async () => {
    const fn = "arn:aws:lambda:us-east-1:123456789012:function:f";
    const set = ruleSet(
      rule("a", [], [addHeader("X-A", "1"), lambda(fn, "RequestResponse"), s3("skipped-by-disposition")]),
      rule("b", [], [s3("first-try-fails"), s3("then")]),
    );
    let attempts = 0;
    const flaky: ActionExecutor<null> = {
      ...recordingExecutor<null>({ lambdaResults: { [fn]: "STOP_RULE" } }),
      S3: async (call) =>
        call.params.BucketName === "first-try-fails" && attempts++ === 0
          ? { status: "failed", failure: "transient", error: "503" }
          : { status: "done" },
    };
    const first = await run(set, {}, flaky);
    expect(first.end).toBe("failed");
    const done: ActionOutcome[] = first.outcomes.filter((o) => o.status === "done");
    expect(done).toHaveLength(2);

    const resumedCalls = recordingExecutor<null>();
    const resumed = await evaluate(
      {
        ruleSet: set,
        identities,
        envelope: { mailFrom: "s@example.net", recipients: ["info@example.com"] },
        messageId: MESSAGE_ID,
        message: null,
        recorded: done,
      },
      resumedCalls,
    );
    expect(summary(resumed)).toEqual(["a:AddHeader=done,Lambda=done,S3=skipped!STOP_RULE", "b:S3=done,S3=done"]);
    expect(resumedCalls.calls.map((c) => c.params)).toEqual([{ BucketName: "first-try-fails" }, { BucketName: "then" }]);
    expect(resumedCalls.calls[0]!.prependedHeaders).toEqual([{ name: "X-A", value: "1" }]);
  });
});

describe("rule set snapshots (docs/behaviour.md §1)", () => {
  it("a loaded rule set cannot change under the messages evaluated against it", async () => {
    const { parseRuleSet } = await import("../../src/rules/parse.js");
    const parsed = parseRuleSet({
      Rules: [{ Name: "a", Enabled: true, Recipients: ["example.com"], Actions: [{ S3Action: { BucketName: "bucket" } }] }],
    });
    if (!parsed.ok) throw new Error("fixture invalid");
    const snapshot = parsed.value;
    expect(() => (snapshot.rules as unknown as unknown[]).push(rule("b", []))).toThrow(TypeError);
    expect(() => ((snapshot.rules[0] as { enabled: boolean }).enabled = false)).toThrow(TypeError);
    expect(() => ((snapshot.rules[0]!.recipients as string[])[0] = "example.org")).toThrow(TypeError);
    expect(() => ((snapshot.rules[0]!.actions[0]!.params as { BucketName: string }).BucketName = "x")).toThrow(TypeError);
    const trace = await run(snapshot);
    expect(trace.rules.map((r) => r.name)).toEqual(["a"]);
  });
});
