// The README's example: how a team tests its own rule set with receiptd/testing.
import { beforeAll, describe, expect, it } from "vitest";
import { evaluateMessage, loadMessage, loadRuleSet, message } from "receiptd/testing";
import type { RuleSet } from "receiptd/testing";
import "receiptd/testing/vitest";

describe("rules/example.json", () => {
  let rules: RuleSet;
  beforeAll(async () => {
    rules = await loadRuleSet("rules/example.json");
  });

  it("archives ordinary mail and notifies the company topic", async () => {
    const result = await evaluateMessage(rules, message({ from: "alice@example.org", to: "info@example.com" }));
    expect(result).toMatchRules(["company-notify", "archive-everything"]);
    expect(result).toRunAction("S3", { BucketName: "receiptd-archive", ObjectKeyPrefix: "all/" });
    expect(result).toRunAction("SNS", { Encoding: "UTF-8" }, { rule: "company-notify" });
    expect(result).not.toStopAt("archive-everything");
  });

  it("tags billing mail before publishing it, and the header is seen by later actions", async () => {
    const result = await evaluateMessage(rules, message({ to: "support+billing@example.com" }));
    expect(result).toRunAction("AddHeader", { HeaderName: "X-Queue", HeaderValue: "billing" });
    const publish = result.calls.find((call) => call.type === "SNS" && call.rule === "support-billing");
    expect(publish?.prependedHeaders).toContainEqual({ name: "X-Queue", value: "billing" });
    expect(result).toMatchRule("support-mailbox");
    expect(result).not.toMatchRule("legacy-forwarder");
  });

  it("bounces mail to noreply@ and stops there; strangers are refused at RCPT TO", async () => {
    const result = await evaluateMessage(rules, await loadMessage("samples/noreply.eml"));
    expect(result).toRunAction("Bounce", { SmtpReplyCode: "550", StatusCode: "5.1.1" });
    expect(result).toStopAt("no-reply", "Stop");
    expect(result).toRefuseRecipient("stranger@example.net", "550 5.7.1 Relaying denied");
    expect(result).toAcceptRecipient("payroll@example.com");
  });

  it("lets the abuse triage function decide", async () => {
    const triage = "arn:aws:lambda:us-east-1:123456789012:function:triage-abuse";
    const continued = await evaluateMessage(rules, message({ to: ["abuse@example.org", "info@example.com"] }), {
      lambdaResults: { [triage]: "STOP_RULE" },
    });
    expect(continued).toMatchRules(["abuse-reports", "company-notify", "archive-everything"]);
    expect(continued).not.toRunAction("Stop");

    const stopped = await evaluateMessage(rules, message({ to: ["abuse@example.org", "info@example.com"] }));
    expect(stopped).toStopAt("abuse-reports");
    expect(stopped).not.toMatchRule("archive-everything");
  });

  it("refuses what no rule wants, with the reply the SMTP client would see", async () => {
    const result = await evaluateMessage(rules, message({ to: ["nobody@example.net"] }), { identities: ["example.com", "example.org"] });
    expect(result).toRefuseRecipient("nobody@example.net", /Relaying denied/);
    expect(result).toMatchRules([]);
  });

  it("failing matchers explain what happened", async () => {
    const result = await evaluateMessage(rules, message({ to: "info@example.com" }));
    expect(() => expect(result).toMatchRule("no-reply")).toThrow(/matched: \["company-notify","archive-everything"\]/);
    expect(() => expect(result).toRunAction("Bounce")).toThrow(/archive-everything: S3 done/);
    expect(() => expect(result).toRefuseRecipient("info@example.com")).toThrow(/accepted/);
    expect(() => expect(result).toStopAt("company-notify")).toThrow(/ran to the end/);
  });
});
