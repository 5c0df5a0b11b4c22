import { describe, expect, it } from "vitest";
import { identitiesFrom } from "../../src/rules/recipients.js";
import { scanVerdict } from "../../src/ses/verdicts.js";
import { rule, ruleSet } from "../helpers/rules.js";

describe("spam and virus verdicts without a scanner", () => {
  const identities = identitiesFrom(["example.com"]);
  const rules = ruleSet(
    rule("scans", ["abuse@example.com"], [], { scanEnabled: true }),
    rule("scans-but-off", ["off@example.com"], [], { scanEnabled: true, enabled: false }),
    rule("plain", ["example.com"]),
  );

  it("GRAY when an enabled rule that scans matches a recipient, DISABLED otherwise", () => {
    expect(scanVerdict(rules, identities, ["info@example.com", "abuse@example.com"])).toBe("GRAY");
    expect(scanVerdict(rules, identities, ["info@example.com"])).toBe("DISABLED");
    expect(scanVerdict(rules, identities, ["off@example.com"])).toBe("DISABLED");
    expect(scanVerdict(rules, identities, [])).toBe("DISABLED");
  });
});
