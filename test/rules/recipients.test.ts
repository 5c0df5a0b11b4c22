import { describe, expect, it } from "vitest";
import {
  entryMatches,
  identitiesFrom,
  identitiesOfRules,
  isInsideIdentity,
  ruleMatchesRecipient,
  rulesMatchingRecipient,
} from "../../src/rules/recipients.js";
import { rule } from "../helpers/rules.js";

// docs/behaviour.md §2, one row per line of the table: entry, matches, does not match.
const TABLE: [entry: string, matches: string[], doesNotMatch: string[]][] = [
  [
    "user@example.com",
    ["user@example.com", "user+anything@example.com", "user+a+b@example.com", "USER@Example.COM", "User+Tag@EXAMPLE.com"],
    ["other@example.com", "user@sub.example.com", "user@example.org", "users@example.com", "xuser@example.com", "user-x@example.com"],
  ],
  [
    "user+label@example.com",
    ["user+label@example.com", "USER+LABEL@example.com"],
    ["user@example.com", "user+other@example.com", "user+label+more@example.com", "user+labelx@example.com"],
  ],
  [
    "example.com",
    ["a@example.com", "user+x@example.com", "x@EXAMPLE.COM"],
    ["a@sub.example.com", "a@notexample.com", "a@example.com.evil.org", "a@example.org"],
  ],
  [
    ".example.com",
    ["a@a.example.com", "a@a.b.example.com", "a@A.EXAMPLE.com"],
    ["a@example.com", "a@notexample.com", "a@aexample.com", "a@example.com.evil.org"],
  ],
  ["Example.COM", ["a@example.com"], ["a@sub.example.com"]],
  ["USER@EXAMPLE.COM", ["user@example.com", "user+x@example.com"], ["other@example.com"]],
];

describe("recipient matching (docs/behaviour.md §2)", () => {
  for (const [entry, matches, doesNotMatch] of TABLE) {
    for (const recipient of matches) {
      it(`${entry} matches ${recipient}`, () => {
        expect(entryMatches(entry, recipient)).toBe(true);
        expect(rulesMatchingRecipient([rule("r", [entry])], recipient, identitiesFrom([]))).toEqual([0]);
      });
    }
    for (const recipient of doesNotMatch) {
      it(`${entry} does not match ${recipient}`, () => {
        expect(entryMatches(entry, recipient)).toBe(false);
        expect(rulesMatchingRecipient([rule("r", [entry])], recipient, identitiesFrom([]))).toEqual([]);
      });
    }
  }

  it("a malformed recipient matches nothing", () => {
    for (const bad of ["", "nobody", "@example.com", "user@"]) {
      expect(entryMatches("example.com", bad)).toBe(false);
      expect(isInsideIdentity(bad, identitiesFrom(["example.com"]))).toBe(false);
    }
  });

  describe("a rule without Recipients matches every recipient inside a verified identity", () => {
    const identities = identitiesFrom(["example.com", "solo@example.org"]);
    const catchAll = rule("all", []);
    it.each([
      ["a@example.com", true],
      ["A@EXAMPLE.COM", true],
      ["a@sub.example.com", true],
      ["a@b.sub.example.com", true],
      ["solo@example.org", true],
      ["SOLO@example.org", true],
      ["solo+x@example.org", false],
      ["other@example.org", false],
      ["a@example.net", false],
      ["a@notexample.com", false],
    ])("%s -> %s", (recipient, expected) => {
      expect(isInsideIdentity(recipient, identities)).toBe(expected);
      expect(ruleMatchesRecipient(catchAll, recipient, identities)).toBe(expected);
      expect(rulesMatchingRecipient([catchAll], recipient, identities)).toEqual(expected ? [0] : []);
    });
  });

  it("identities of a rule set are the domains its recipients name", () => {
    const identities = identitiesOfRules([rule("a", ["info@example.com", ".example.org", "example.net"]), rule("b", [])]);
    expect([...identities.domains].sort()).toEqual(["example.com", "example.net", "example.org"]);
    expect(identities.addresses.size).toBe(0);
  });

  describe("an IDN domain is one domain in its A-label and U-label spellings", () => {
    const A = "xn--mnchen-3ya.test";
    const U = "münchen.test";
    it.each([
      [A, `info@${A}`],
      [A, `info@${U}`],
      [U, `info@${A}`],
      [U, `info@MÜNCHEN.test`],
      [`XN--MNCHEN-3YA.TEST`, `info@${U}`],
      [`info@${U}`, `info+x@${A}`],
      [`info@${A}`, `INFO@${U}`],
      [`.${U}`, `info@mail.${A}`],
      [`.${A}`, `info@mail.${U}`],
    ])("entry %s matches %s", (entry, recipient) => {
      expect(entryMatches(entry, recipient)).toBe(true);
      expect(rulesMatchingRecipient([rule("r", [entry])], recipient, identitiesFrom([]))).toEqual([0]);
    });

    it.each([
      [A, `info@mail.${U}`],
      [U, "info@munchen.test"],
      [`.${U}`, `info@${A}`],
    ])("entry %s does not match %s", (entry, recipient) => {
      expect(entryMatches(entry, recipient)).toBe(false);
      expect(rulesMatchingRecipient([rule("r", [entry])], recipient, identitiesFrom([]))).toEqual([]);
    });

    it.each([
      [[A], `info@${U}`],
      [[U], `info@${A}`],
      [[U], `info@sub.${A}`],
      [[`info@${A}`], `info@${U}`],
      [[`Info@${U}`], `info@${A}`],
    ])("identities %j take %s", (entries, recipient) => {
      const identities = identitiesFrom(entries);
      expect(isInsideIdentity(recipient, identities)).toBe(true);
      expect(rulesMatchingRecipient([rule("all", [])], recipient, identities)).toEqual([0]);
    });

    it("a rule set's own identities take its IDN domains in either spelling", () => {
      const identities = identitiesOfRules([rule("a", [U]), rule("b", [`info@${A}`])]);
      expect([...identities.domains]).toEqual([A]);
      expect(isInsideIdentity(`x@${A}`, identities)).toBe(true);
      expect(isInsideIdentity(`x@${U}`, identities)).toBe(true);
    });
  });

  it("the index answers exactly as a scan of every entry of every rule", () => {
    const entries = [
      "user@example.com",
      "user+label@example.com",
      "USER+x@example.com",
      "example.com",
      ".example.com",
      "sub.example.com",
      ".sub.example.com",
      "example.org",
      "a@b.example.org",
    ];
    const rules = Array.from({ length: 40 }, (_, i) =>
      rule(`r${i}`, i % 7 === 0 ? [] : entries.filter((_, j) => (i * 31 + j * 17) % 3 === 0)),
    );
    const locals = ["user", "User", "user+label", "user+x", "user+label+x", "a", "b+c", "x"];
    const domains = ["example.com", "Sub.Example.com", "a.sub.example.com", "example.org", "b.example.org", "other.net"];
    const identities = identitiesFrom(["example.com", "example.org"]);
    for (const local of locals) {
      for (const domain of domains) {
        const recipient = `${local}@${domain}`;
        const scanned = rules.flatMap((r, i) => (ruleMatchesRecipient(r, recipient, identities) ? [i] : []));
        expect(rulesMatchingRecipient(rules, recipient, identities), recipient).toEqual(scanned);
      }
    }
  });
});
