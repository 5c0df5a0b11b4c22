import { describe, expect, it } from "vitest";
import { CONFIRMATION_MS, afterFindings, awaitingDns, newIdentity } from "../../src/store/identity.js";
import type { IdentityRecord } from "../../src/store/store.js";

const HOUR = 60 * 60 * 1000;
const limits = { timeoutMs: 72 * HOUR, confirmationMs: CONFIRMATION_MS };
const start = new Date("2026-12-01T00:00:00Z");
const at = (hours: number) => new Date(start.getTime() + hours * HOUR);

function domain(): IdentityRecord {
  const record = newIdentity("example.net", "Domain", start, "Pending", "token");
  return { ...record, dkim: { enabled: true, status: "Pending", tokens: ["a", "b", "c"], since: start.toISOString() }, mailFrom: { domain: "m.example.net", status: "Pending", since: start.toISOString(), behaviorOnMxFailure: "UseDefaultValue" } };
}

describe("afterFindings", () => {
  it("is Success when found, TemporaryFailure when DNS fails, and Pending again when it answers without the record", () => {
    const record = domain();
    expect(afterFindings(record, { identity: "found" }, at(1), limits).verification).toMatchObject({ status: "Success", since: at(1).toISOString() });
    const failing = afterFindings(record, { identity: "error", dkim: "error" }, at(1), limits);
    expect([failing.verification.status, failing.dkim.status, failing.mailFrom.status]).toEqual(["TemporaryFailure", "TemporaryFailure", "Pending"]);
    expect(afterFindings(failing, { identity: "missing" }, at(2), limits).verification.status).toBe("Pending");
  });

  it("fails a record not found for the time-out, counted from when its status last changed", () => {
    const record = domain();
    expect(afterFindings(record, { identity: "missing", dkim: "missing", mailFrom: "missing" }, at(71), limits)).toBe(record);
    const failed = afterFindings(record, { identity: "missing", dkim: "missing", mailFrom: "found" }, at(72), limits);
    expect([failed.verification.status, failed.dkim.status, failed.mailFrom.status]).toEqual(["Failed", "Failed", "Success"]);
    expect(awaitingDns(failed)).toEqual({ identity: false, dkim: false, mailFrom: false });
    // Failed is final until the identity is verified again.
    expect(afterFindings(failed, { identity: "found" }, at(73), limits)).toBe(failed);
  });

  it("expires an address's confirmation link after 24 hours, and leaves verified records alone", () => {
    const address: IdentityRecord = { ...newIdentity("ops@example.net", "EmailAddress", start, "Pending"), verification: { status: "Pending", since: start.toISOString(), confirmation: "ab" } };
    expect(afterFindings(address, {}, at(23), limits)).toBe(address);
    expect(afterFindings(address, {}, at(24), limits).verification).toEqual({ status: "Failed", since: at(24).toISOString() });
    const verified = newIdentity("example.org", "Domain", start, "Success", "t");
    expect(afterFindings(verified, { identity: "missing" }, at(100), limits)).toBe(verified);
  });
});
