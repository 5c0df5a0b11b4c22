import { createHash, timingSafeEqual } from "node:crypto";
import { CONFIRMATION_MS } from "../store/identity.js";
import type { ChangeOrigin, IdentityRecord, StateStore } from "../store/store.js";

/** The path of the link that an address under DNS verification is emailed (docs/behaviour.md §12). */
export const CONFIRM_PATH = "/confirm-email";

export type Confirmation = "verified" | "already verified" | "invalid";

/** The link for one address: no signature, the token is the credential. */
export function confirmationLink(base: string, scope: { account: string; region: string }, address: string, token: string): string {
  const query = new URLSearchParams({ account: scope.account, region: scope.region, identity: address, token });
  return `${base.replace(/\/$/, "")}${CONFIRM_PATH}?${query}`;
}

const sameHash = (a: string, b: string) => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));

/**
 * A click on a confirmation link: the address becomes verified when the token is the one last
 * emailed to it and was emailed within 24 hours. Anything else changes nothing and reads as
 * invalid, without telling which part was wrong.
 */
export async function confirmEmail(
  store: StateStore,
  query: URLSearchParams,
  now: Date,
  origin: Pick<ChangeOrigin, "requestId" | "address">,
): Promise<Confirmation> {
  const account = query.get("account") ?? "";
  const region = query.get("region") ?? "";
  const identity = query.get("identity") ?? "";
  const token = query.get("token") ?? "";
  if (!/^\d{12}$/.test(account) || !/^[a-z]{2}(-[a-z]+)+-\d+$/.test(region) || !/^[A-Za-z0-9_-]{43}$/.test(token) || !identity.includes("@")) return "invalid";
  const hash = createHash("sha256").update(token).digest("hex");
  return store.update(
    { account, region },
    { via: "api", operation: "ConfirmEmailIdentity", target: { Identity: identity }, ...origin },
    (state) => {
      const record = state.identities.get(identity);
      if (record?.verification.status === "Success") return { state, result: "already verified" as const };
      const sent = record?.verification.confirmation;
      if (!record || record.verification.status !== "Pending" || sent === undefined || !sameHash(sent, hash)) return { state, result: "invalid" as const };
      if (now.getTime() - Date.parse(record.verification.since) >= CONFIRMATION_MS) return { state, result: "invalid" as const };
      const { confirmation: _used, ...verification } = record.verification;
      void _used;
      const verified: IdentityRecord = Object.freeze({ ...record, verification: { ...verification, status: "Success" as const, since: now.toISOString() } });
      return { state: Object.freeze({ ...state, identities: new Map(state.identities).set(identity, verified) }), result: "verified" as const };
    },
  );
}
