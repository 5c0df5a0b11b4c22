// docs/behaviour.md §5: the testing library's actions see the headers the daemon would put on top.
import { describe, expect, it } from "vitest";
import { evaluateMessage, loadRuleSet, message } from "receiptd/testing";

describe("evaluateMessage", () => {
  it("puts Return-Path, Received and the scan verdicts on top, in SES's order, from the envelope and client", async () => {
    const rules = await loadRuleSet("rules/example.json");
    const raw = message({ from: "reporter@example.net", to: "abuse@example.org" });
    const result = await evaluateMessage(rules, raw, {
      mailFrom: "bounce@example.net",
      recipients: ["abuse@example.org"],
      clientIp: "192.0.2.10",
      helo: "mail.example.net",
      hostname: "mx.receiptd.test",
    });
    const s3 = result.calls.find((call) => call.type === "S3");
    expect(s3?.prependedHeaders.map((h) => h.name)).toEqual(["Return-Path", "Received", "X-SES-Spam-Verdict", "X-SES-Virus-Verdict"]);
    expect(s3?.prependedHeaders[0]).toEqual({ name: "Return-Path", value: "<bounce@example.net>" });
    expect(s3?.prependedHeaders[1]?.value).toMatch(
      new RegExp(`^from mail\\.example\\.net \\(unknown \\[192\\.0\\.2\\.10\\]\\) by mx\\.receiptd\\.test with SMTP id ${result.messageId} for abuse@example\\.org; `),
    );
  });
});
