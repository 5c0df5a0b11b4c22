import type { IdentityRecord, VerificationStatus } from "./store.js";

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
