import { createHash, randomBytes } from "node:crypto";
import { canonicalDomain } from "../../rules/recipients.js";
import { newIdentity } from "../../store/identity.js";
import type { IdentityRecord, ScopeState, VerificationStatus } from "../../store/store.js";
import { SesError, XmlMap } from "../operation.js";
import type { Operation, OperationContext, Params, XmlStruct } from "../operation.js";
import { enumValue, operation, read, write } from "./common.js";

/** Get*Attributes take at most 100 identities (reference §2.2). */
const MAX_IDENTITIES_PER_CALL = 100;

/**
 * An identity as SES compares it: an ARN `arn:aws:ses:<region>:<account>:identity/<name>` is its
 * name (Terraform sends ARNs), a domain is lower-case A-labels, an address keeps its local part.
 */
export function canonicalIdentity(value: string): string {
  const arn = /^arn:aws[a-z-]*:ses:[a-z0-9-]+:\d{12}:identity\/(.+)$/.exec(value);
  const name = arn ? (arn[1] as string) : value;
  const at = name.lastIndexOf("@");
  return at < 0 ? canonicalDomain(name) : `${name.slice(0, at)}@${canonicalDomain(name.slice(at + 1))}`;
}

/** The identities that verify an address: the address itself, then its domain (SES verifies either). */
export function identitiesOf(address: string): string[] {
  const canonical = canonicalIdentity(address);
  const at = canonical.lastIndexOf("@");
  return at < 0 ? [canonical] : [canonical, canonical.slice(at + 1)];
}

/** The verified identity that covers an address, or null. */
export function verifiedIdentityOf(state: ScopeState, address: string): string | null {
  return identitiesOf(address).find((identity) => state.identities.get(identity)?.verification.status === "Success") ?? null;
}

const DOMAIN = /^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$/;

function checkDomain(domain: string, member: string): void {
  if (!DOMAIN.test(domain)) throw new SesError("InvalidParameterValue", `Invalid domain name: ${domain} (${member})`);
}

function checkAddress(address: string, member: string): void {
  const at = address.lastIndexOf("@");
  if (at <= 0 || !DOMAIN.test(address.slice(at + 1)) || /\s/.test(address)) {
    throw new SesError("InvalidParameterValue", `Invalid email address<${address}>. (${member})`);
  }
}

function withIdentity(state: ScopeState, record: IdentityRecord): ScopeState {
  const identities = new Map(state.identities).set(record.identity, Object.freeze(record));
  return Object.freeze({ ...state, identities });
}

function statusFor(context: OperationContext): VerificationStatus {
  return context.services.verification === "auto" ? "Success" : "Pending";
}

/** The identity a Set* call names; Terraform tolerates exactly this message for an unknown one (reference §6.2). */
export function knownIdentity(state: ScopeState, identity: string): IdentityRecord {
  const record = state.identities.get(identity);
  if (!record) throw new SesError("InvalidParameterValue", `Identity ${identity} is invalid. Must be a verified email address or domain.`);
  return record;
}

function identitiesParam(params: Params): string[] {
  const list = params.strings("Identities");
  if (list === undefined) throw new SesError("MissingParameter", "The request must contain the parameter Identities");
  if (list.length > MAX_IDENTITIES_PER_CALL) {
    throw new SesError("InvalidParameterValue", `Identities: at most ${MAX_IDENTITIES_PER_CALL} identities per call`);
  }
  return list;
}

/** Entries for the identities asked about that exist; unknown ones are left out, as SES does. */
function attributes(state: ScopeState, asked: string[], value: (record: IdentityRecord) => XmlStruct): XmlMap {
  const entries: [string, XmlStruct][] = [];
  for (const name of asked) {
    const record = state.identities.get(canonicalIdentity(name));
    if (record) entries.push([name, value(record)]);
  }
  return new XmlMap(entries);
}

const NOTIFICATION_TYPES = ["Bounce", "Complaint", "Delivery"] as const;
type NotificationType = (typeof NOTIFICATION_TYPES)[number];

function notificationType(params: Params): NotificationType {
  return enumValue(params.requiredString("NotificationType"), "notificationType", NOTIFICATION_TYPES);
}

/**
 * Verifying an identity again keeps its record (token, settings). Under DNS verification a
 * Failed identity starts again (Pending, its time-out from now), and an address that is not
 * verified gets a new confirmation link (the newest link is the one that works).
 */
async function verify(context: OperationContext, operationName: string, identity: string, type: IdentityRecord["type"]): Promise<IdentityRecord> {
  // Random before the change: the change must be pure, the store may run it again.
  const token = type === "Domain" ? randomBytes(32).toString("base64") : undefined;
  const link = type === "EmailAddress" && context.services.verification === "dns" ? randomBytes(32).toString("base64url") : undefined;
  const confirmation = link === undefined ? undefined : createHash("sha256").update(link).digest("hex");
  const since = context.now.toISOString();
  const record = (await write(context, operationName, { Identity: identity }, (state) => {
    const existing = state.identities.get(identity);
    if (existing) {
      const status = existing.verification.status;
      const restart = context.services.verification === "dns" && (status === "Failed" || (confirmation !== undefined && status !== "Success"));
      if (!restart) return { state, result: existing };
      const updated: IdentityRecord = { ...existing, verification: { ...existing.verification, status: "Pending", since, ...(confirmation ? { confirmation } : {}) } };
      return { state: withIdentity(state, updated), result: updated };
    }
    const created = newIdentity(identity, type, context.now, statusFor(context), token);
    const updated: IdentityRecord = confirmation ? { ...created, verification: { ...created.verification, confirmation } } : created;
    return { state: withIdentity(state, updated), result: updated };
  })) as IdentityRecord;
  if (link !== undefined && record.verification.confirmation === confirmation) {
    await context.services.confirmation?.send(context.scope, identity, link).catch((error: unknown) => context.services.onError?.("api.confirmation_failed", { identity, error }));
  }
  return record;
}

function verifyEmail(name: string, hasResult: boolean): Operation {
  return operation(name, { writes: true, hasResult }, async (params, context) => {
    const address = canonicalIdentity(params.requiredString("EmailAddress"));
    checkAddress(address, "EmailAddress");
    await verify(context, name, address, "EmailAddress");
    return hasResult ? {} : undefined;
  });
}

function deleteIdentity(name: string, member: string, hasResult: boolean): Operation {
  // Deleting an unknown identity succeeds (reference §8.6).
  return operation(name, { writes: true, hasResult }, async (params, context) => {
    const identity = canonicalIdentity(params.requiredString(member));
    await write(context, name, { Identity: identity }, (state) => {
      if (!state.identities.has(identity)) return { state };
      const identities = new Map(state.identities);
      identities.delete(identity);
      return { state: Object.freeze({ ...state, identities }) };
    });
    return hasResult ? {} : undefined;
  });
}

/** A Set* call: one identity's record changed by `edit`. */
function setter(name: string, edit: (record: IdentityRecord, params: Params, context: OperationContext) => IdentityRecord, prepare?: (params: Params) => void): Operation {
  return operation(name, { writes: true }, async (params, context) => {
    const identity = canonicalIdentity(params.requiredString("Identity"));
    prepare?.(params);
    await write(context, name, { Identity: identity }, (state) => ({
      state: withIdentity(state, edit(knownIdentity(state, identity), params, context)),
    }));
    return {};
  });
}

function dkimTokens(): string[] {
  const alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  return [0, 1, 2].map(() => [...randomBytes(32)].map((byte) => alphabet[byte % 32]).join(""));
}

function listPage(names: string[], token: string | undefined, size: number): { page: string[]; next?: string } {
  let start = 0;
  if (token !== undefined) {
    start = Number.parseInt(Buffer.from(token, "base64url").toString("utf8"), 10);
    if (!Number.isInteger(start) || start < 0 || start > names.length) throw new SesError("InvalidParameterValue", `Invalid NextToken: ${token}`);
  }
  const page = names.slice(start, start + size);
  return start + size < names.length ? { page, next: Buffer.from(String(start + size)).toString("base64url") } : { page };
}

export const IDENTITY_OPERATIONS: readonly Operation[] = [
  verifyEmail("VerifyEmailIdentity", true),
  // The legacy call has no Result element (reference §1.3).
  verifyEmail("VerifyEmailAddress", false),
  operation("VerifyDomainIdentity", { writes: true }, async (params, context) => {
    const domain = canonicalIdentity(params.requiredString("Domain"));
    checkDomain(domain, "Domain");
    const record = await verify(context, "VerifyDomainIdentity", domain, "Domain");
    return { VerificationToken: record.verification.token ?? "" };
  }),
  operation("VerifyDomainDkim", { writes: true }, async (params, context) => {
    const domain = canonicalIdentity(params.requiredString("Domain"));
    checkDomain(domain, "Domain");
    const tokens = dkimTokens();
    const record = await write(context, "VerifyDomainDkim", { Identity: domain }, (state) => {
      const existing = state.identities.get(domain) ?? newIdentity(domain, "Domain", context.now, statusFor(context), undefined);
      const since = context.now.toISOString();
      if (existing.dkim.tokens.length > 0) {
        if (existing.dkim.status !== "Failed") return { state, result: existing };
        // Under DNS verification a Failed DKIM set-up starts again, with the same tokens.
        const restarted: IdentityRecord = { ...existing, dkim: { ...existing.dkim, status: "Pending", since } };
        return { state: withIdentity(state, restarted), result: restarted };
      }
      const updated: IdentityRecord = { ...existing, dkim: { enabled: true, status: statusFor(context), tokens, since } };
      return { state: withIdentity(state, updated), result: updated };
    });
    return { DkimTokens: [...(record as IdentityRecord).dkim.tokens] };
  }),
  operation("ListIdentities", { writes: false }, async (params, context) => {
    const given = params.string("IdentityType");
    const type = given === undefined ? undefined : enumValue(given, "identityType", ["EmailAddress", "Domain"] as const);
    const max = params.integer("MaxItems") ?? 1000;
    if (max < 1 || max > 1000) throw new SesError("InvalidParameterValue", "MaxItems: must be between 1 and 1000");
    const token = params.string("NextToken");
    return read(context, (state) => {
      const names = [...state.identities.values()].filter((r) => type === undefined || r.type === type).map((r) => r.identity);
      const { page, next } = listPage(names, token, max);
      return { Identities: page, ...(next === undefined ? {} : { NextToken: next }) };
    });
  }),
  operation("ListVerifiedEmailAddresses", { writes: false }, async (_params, context) =>
    read(context, (state) => ({
      VerifiedEmailAddresses: [...state.identities.values()]
        .filter((r) => r.type === "EmailAddress" && r.verification.status === "Success")
        .map((r) => r.identity),
    })),
  ),
  deleteIdentity("DeleteIdentity", "Identity", true),
  deleteIdentity("DeleteVerifiedEmailAddress", "EmailAddress", false),
  operation("GetIdentityVerificationAttributes", { writes: false }, async (params, context) => {
    const asked = identitiesParam(params);
    return read(context, (state) => ({
      VerificationAttributes: attributes(state, asked, (r) => ({
        VerificationStatus: r.verification.status,
        ...(r.verification.token === undefined ? {} : { VerificationToken: r.verification.token }),
      })),
    }));
  }),
  operation("GetIdentityDkimAttributes", { writes: false }, async (params, context) => {
    const asked = identitiesParam(params);
    return read(context, (state) => ({
      DkimAttributes: attributes(state, asked, (r) => ({
        DkimEnabled: r.dkim.enabled,
        DkimVerificationStatus: r.dkim.status,
        ...(r.type === "Domain" ? { DkimTokens: [...r.dkim.tokens] } : {}),
      })),
    }));
  }),
  setter("SetIdentityDkimEnabled", (record, params) => {
    const enabled = params.boolean("DkimEnabled");
    if (enabled === undefined) throw new SesError("MissingParameter", "The request must contain the parameter DkimEnabled");
    if (enabled && record.dkim.tokens.length === 0) {
      throw new SesError("InvalidParameterValue", `Easy DKIM is not set up for ${record.identity}; call VerifyDomainDkim first`);
    }
    return { ...record, dkim: { ...record.dkim, enabled } };
  }),
  operation("GetIdentityMailFromDomainAttributes", { writes: false }, async (params, context) => {
    const asked = identitiesParam(params);
    return read(context, (state) => ({
      MailFromDomainAttributes: attributes(state, asked, (r) => ({
        MailFromDomain: r.mailFrom.domain ?? "",
        ...(r.mailFrom.status === undefined ? {} : { MailFromDomainStatus: r.mailFrom.status }),
        BehaviorOnMXFailure: r.mailFrom.behaviorOnMxFailure,
      })),
    }));
  }),
  setter("SetIdentityMailFromDomain", (record, params, context) => {
    const domain = params.string("MailFromDomain");
    const behavior = enumValue(params.string("BehaviorOnMXFailure") ?? "UseDefaultValue", "behaviorOnMXFailure", ["RejectMessage", "UseDefaultValue"] as const);
    if (domain === undefined || domain === "") return { ...record, mailFrom: { behaviorOnMxFailure: behavior } };
    const canonical = canonicalDomain(domain);
    const parent = record.type === "Domain" ? record.identity : record.identity.slice(record.identity.lastIndexOf("@") + 1);
    if (!canonical.endsWith(`.${parent}`)) {
      throw new SesError("InvalidParameterValue", `MailFromDomain ${domain} must be a subdomain of ${parent}`);
    }
    return {
      ...record,
      mailFrom: {
        domain: canonical,
        status: context.services.verification === "auto" ? "Success" : "Pending",
        since: context.now.toISOString(),
        behaviorOnMxFailure: behavior,
      },
    };
  }),
  operation("GetIdentityNotificationAttributes", { writes: false }, async (params, context) => {
    const asked = identitiesParam(params);
    return read(context, (state) => ({
      NotificationAttributes: attributes(state, asked, (r) => ({
        BounceTopic: r.notifications.bounceTopic ?? "",
        ComplaintTopic: r.notifications.complaintTopic ?? "",
        DeliveryTopic: r.notifications.deliveryTopic ?? "",
        ForwardingEnabled: r.notifications.forwardingEnabled,
        HeadersInBounceNotificationsEnabled: r.notifications.headersInBounce,
        HeadersInComplaintNotificationsEnabled: r.notifications.headersInComplaint,
        HeadersInDeliveryNotificationsEnabled: r.notifications.headersInDelivery,
      })),
    }));
  }),
  setter(
    "SetIdentityNotificationTopic",
    (record, params) => {
      const key = `${notificationType(params).toLowerCase()}Topic` as "bounceTopic" | "complaintTopic" | "deliveryTopic";
      const topic = params.string("SnsTopic");
      const notifications = { ...record.notifications };
      if (topic === undefined || topic === "") delete notifications[key];
      else notifications[key] = topic;
      return { ...record, notifications };
    },
    (params) => {
      const topic = params.string("SnsTopic");
      if (topic && !/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$/.test(topic)) {
        throw new SesError("InvalidParameterValue", `Invalid SNS topic: ${topic}`);
      }
    },
  ),
  setter("SetIdentityFeedbackForwardingEnabled", (record, params) => {
    const enabled = params.boolean("ForwardingEnabled");
    if (enabled === undefined) throw new SesError("MissingParameter", "The request must contain the parameter ForwardingEnabled");
    if (!enabled && (!record.notifications.bounceTopic || !record.notifications.complaintTopic)) {
      throw new SesError(
        "InvalidParameterValue",
        `Feedback forwarding cannot be disabled for ${record.identity} unless it has both a Bounce and a Complaint topic`,
      );
    }
    return { ...record, notifications: { ...record.notifications, forwardingEnabled: enabled } };
  }),
  setter("SetIdentityHeadersInNotificationsEnabled", (record, params) => {
    const type = notificationType(params);
    const enabled = params.boolean("Enabled");
    if (enabled === undefined) throw new SesError("MissingParameter", "The request must contain the parameter Enabled");
    const key = `headersIn${type}` as "headersInBounce" | "headersInComplaint" | "headersInDelivery";
    return { ...record, notifications: { ...record.notifications, [key]: enabled } };
  }),
];
