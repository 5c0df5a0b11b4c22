import { describe, expect, it } from "vitest";
import { REPLIES, decideRecipient, decideRecipients } from "../../src/rules/recipient-policy.js";
import { identitiesFrom } from "../../src/rules/recipients.js";
import { rule, ruleSet } from "../helpers/rules.js";

describe("the recipient policy at RCPT TO (docs/behaviour.md §4)", () => {
  const identities = identitiesFrom(["example.com", "example.org", "secure.example.net"]);
  const active = ruleSet(
    rule("info", ["info@example.com"]),
    rule("disabled", ["off@example.com"], [], { enabled: false }),
    rule("absent-enabled-is-false", ["never@example.com"], [], { enabled: false }),
    rule("tls", ["secure.example.net"], [], { tlsPolicy: "Require" }),
    rule("org", ["example.org"]),
  );
  const base = { ruleSet: active, identities, tls: false, acceptedSoFar: 0 };

  it("no active rule set refuses everything with mailbox unavailable", () => {
    expect(decideRecipient("info@example.com", { ...base, ruleSet: null })).toEqual({
      accepted: false,
      reason: "mailbox-unavailable",
      reply: "550 5.1.1 Requested action not taken: mailbox unavailable",
    });
  });

  it("a recipient outside every verified identity is relaying denied", () => {
    expect(decideRecipient("someone@example.net", base)).toEqual({ accepted: false, reason: "relaying-denied", reply: "550 5.7.1 Relaying denied" });
  });

  it("a verified recipient no enabled rule matches is mailbox unavailable", () => {
    expect(decideRecipient("nobody@example.com", base)).toEqual({ accepted: false, reason: "mailbox-unavailable", reply: REPLIES.mailboxUnavailable });
    expect(decideRecipient("off@example.com", base)).toEqual({ accepted: false, reason: "mailbox-unavailable", reply: REPLIES.mailboxUnavailable });
    expect(decideRecipient("never@example.com", base)).toEqual({ accepted: false, reason: "mailbox-unavailable", reply: REPLIES.mailboxUnavailable });
  });

  it("a matching rule that requires TLS refuses a plain session and accepts a TLS one", () => {
    expect(decideRecipient("a@secure.example.net", base)).toEqual({
      accepted: false,
      reason: "tls-required",
      reply: "530 5.7.0 Must issue a STARTTLS command first",
    });
    expect(decideRecipient("a@secure.example.net", { ...base, tls: true })).toEqual({ accepted: true });
  });

  it("a disabled rule's TLS requirement does not apply", () => {
    const set = ruleSet(rule("strict-off", ["example.com"], [], { enabled: false, tlsPolicy: "Require" }), rule("open", ["example.com"]));
    expect(decideRecipient("a@example.com", { ...base, ruleSet: set })).toEqual({ accepted: true });
  });

  it("any matching enabled rule with Require is enough to ask for TLS", () => {
    const set = ruleSet(rule("open", ["example.com"]), rule("strict", ["info@example.com"], [], { tlsPolicy: "Require" }));
    expect(decideRecipient("info@example.com", { ...base, ruleSet: set })).toEqual({ accepted: false, reason: "tls-required", reply: REPLIES.mustStartTls });
    expect(decideRecipient("other@example.com", { ...base, ruleSet: set })).toEqual({ accepted: true });
  });

  it("accepts recipients any enabled rule matches, ignoring case", () => {
    expect(decideRecipient("INFO@Example.com", base)).toEqual({ accepted: true });
    expect(decideRecipient("info+x@example.com", base)).toEqual({ accepted: true });
    expect(decideRecipient("anyone@example.org", base)).toEqual({ accepted: true });
  });

  it("accepts an IDN domain's mail in A-label or U-label form, whichever form rules and identities use", () => {
    // smtp-server hands RCPT TO:<info@xn--mnchen-3ya.test> over as info@münchen.test.
    for (const ruleDomain of ["xn--mnchen-3ya.test", "münchen.test"]) {
      for (const identity of ["xn--mnchen-3ya.test", "münchen.test"]) {
        const context = { ruleSet: ruleSet(rule("idn", [ruleDomain])), identities: identitiesFrom([identity]), tls: false, acceptedSoFar: 0 };
        for (const recipient of ["info@xn--mnchen-3ya.test", "info@münchen.test", "info@MÜNCHEN.TEST"]) {
          expect(decideRecipient(recipient, context), `${ruleDomain} / ${identity} / ${recipient}`).toEqual({ accepted: true });
        }
        expect(decideRecipient("info@munchen.test", context)).toEqual({ accepted: false, reason: "relaying-denied", reply: REPLIES.relayingDenied });
      }
    }
  });

  it("over the recipient limit (default 100) answers 452 4.5.3", () => {
    expect(decideRecipient("info@example.com", { ...base, acceptedSoFar: 99 })).toEqual({ accepted: true });
    expect(decideRecipient("info@example.com", { ...base, acceptedSoFar: 100 })).toEqual({
      accepted: false,
      reason: "too-many-recipients",
      reply: "452 4.5.3 Too many recipients",
    });
    expect(decideRecipient("info@example.com", { ...base, acceptedSoFar: 2, maxRecipients: 2 })).toEqual({
      accepted: false,
      reason: "too-many-recipients",
      reply: REPLIES.tooManyRecipients,
    });
  });

  it("a whole envelope: refused recipients do not count toward the limit", () => {
    const decision = decideRecipients(
      ["info@example.com", "x@example.net", "a@example.org", "b@example.org", "nobody@example.com"],
      { ruleSet: active, identities, tls: false, maxRecipients: 2 },
    );
    expect(decision.accepted).toEqual(["info@example.com", "a@example.org"]);
    expect(decision.refused).toEqual([
      { recipient: "x@example.net", reply: REPLIES.relayingDenied },
      { recipient: "b@example.org", reply: REPLIES.tooManyRecipients },
      { recipient: "nobody@example.com", reply: REPLIES.mailboxUnavailable },
    ]);
  });
});
