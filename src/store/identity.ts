import type { IdentityRecord, VerificationStatus } from "./store.js";

/** SES: a confirmation link "expires after 24 hours". */
export const CONFIRMATION_MS = 24 * 60 * 60 * 1000;

/** A new identity with SES's defaults: DKIM off, the default MAIL FROM, feedback forwarded by email. */
export function newIdentity(identity: string, type: IdentityRecord["type"], now: Date, status: VerificationStatus, token?: string): IdentityRecord {
  const since = now.toISOString();
  const record: IdentityRecord = {
    identity,
    type,
    createdAt: since,
    verification: { status, ...(token === undefined ? {} : { token }), since },
    dkim: { enabled: false, status: "NotStarted", tokens: [] },
    mailFrom: { behaviorOnMxFailure: "UseDefaultValue" },
    notifications: { forwardingEnabled: true, headersInBounce: false, headersInComplaint: false, headersInDelivery: false },
    policies: {},
  };
  return Object.freeze(record);
}

/** What one look at DNS found for a record: the expected record, none, or no answer (a DNS failure). */
export type Finding = "found" | "missing" | "error";

export interface Findings {
  /** The `_amazonses` TXT record holding the token (domains). */
  identity?: Finding;
  /** All three DKIM CNAMEs. */
  dkim?: Finding;
  /** The MAIL FROM domain's MX. */
  mailFrom?: Finding;
}

/** Which parts of a record are waiting for DNS. */
export function awaitingDns(record: IdentityRecord): { identity: boolean; dkim: boolean; mailFrom: boolean } {
  const waiting = (status: string | undefined) => status === "Pending" || status === "TemporaryFailure";
  return {
    identity: record.type === "Domain" && waiting(record.verification.status),
    dkim: record.dkim.tokens.length > 0 && waiting(record.dkim.status),
    mailFrom: record.mailFrom.domain !== undefined && waiting(record.mailFrom.status),
  };
}

export interface VerificationLimits {
  /** How long a record may stay not found before its status is Failed (SES: 72 hours). */
  timeoutMs: number;
  /** How long an emailed confirmation link is good for (SES: 24 hours). */
  confirmationMs: number;
}

type Status = "Pending" | "Success" | "Failed" | "TemporaryFailure";

/**
 * One status after a finding, as SES reports them: found is Success; a DNS failure is
 * TemporaryFailure; not found is Pending, and Failed once it has been so for the time-out.
 */
function step(status: Status, since: string, finding: Finding | undefined, now: Date, timeoutMs: number): Status {
  if (finding === undefined || (status !== "Pending" && status !== "TemporaryFailure")) return status;
  if (finding === "found") return "Success";
  if (finding === "error") return "TemporaryFailure";
  if (status === "TemporaryFailure") return "Pending";
  return now.getTime() - Date.parse(since) >= timeoutMs ? "Failed" : "Pending";
}

/** The record after what DNS found (and the clock, for time-outs); the same object when nothing changed. Pure. */
export function afterFindings(record: IdentityRecord, findings: Findings, now: Date, limits: VerificationLimits): IdentityRecord {
  const at = now.toISOString();
  let next = record;
  const { verification, dkim, mailFrom } = record;
  if (record.type === "EmailAddress") {
    if (verification.status === "Pending" && now.getTime() - Date.parse(verification.since) >= limits.confirmationMs) {
      const { confirmation: _expired, ...kept } = verification;
      void _expired;
      next = { ...next, verification: { ...kept, status: "Failed", since: at } };
    }
  } else {
    const status = step(verification.status as Status, verification.since, findings.identity, now, limits.timeoutMs);
    if (status !== verification.status) next = { ...next, verification: { ...verification, status, since: at } };
  }
  if (dkim.tokens.length > 0) {
    const status = step(dkim.status as Status, dkim.since ?? record.createdAt, findings.dkim, now, limits.timeoutMs);
    if (status !== dkim.status) next = { ...next, dkim: { ...dkim, status, since: at } };
  }
  if (mailFrom.status !== undefined) {
    const status = step(mailFrom.status, mailFrom.since ?? record.createdAt, findings.mailFrom, now, limits.timeoutMs);
    if (status !== mailFrom.status) next = { ...next, mailFrom: { ...mailFrom, status, since: at } };
  }
  return next === record ? record : Object.freeze(next);
}
