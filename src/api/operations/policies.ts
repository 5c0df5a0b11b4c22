import type { IdentityRecord, ScopeState } from "../../store/store.js";
import { SesError, XmlMap } from "../operation.js";
import type { Operation, Params } from "../operation.js";
import { operation, read, write } from "./common.js";
import { canonicalIdentity, knownIdentity } from "./identities.js";

/** SES: a policy document "cannot exceed 4 KB"; an identity has at most 20 policies (reference §7.2). */
const MAX_POLICY_BYTES = 4096;
const MAX_POLICIES = 20;
const POLICY_NAME = /^[0-9A-Za-z_-]{1,64}$/;

function policyName(params: Params, member: string, value = params.requiredString(member)): string {
  if (!POLICY_NAME.test(value)) {
    throw new SesError("InvalidParameterValue", `${member}: a policy name is 1 to 64 letters, digits, dashes and underscores: ${value}`);
  }
  return value;
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value);
const strings = (value: unknown): value is string | string[] =>
  typeof value === "string" || (Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === "string"));

function bad(problem: string): SesError {
  return new SesError("InvalidPolicy", `Invalid policy: ${problem}`);
}

/**
 * A sending-authorization policy checked as far as SES documents it, each problem named by its
 * place in the document. Returns the document compacted, as SES gives it back.
 */
export function checkPolicyDocument(text: string, identityArn: string): string {
  if (Buffer.byteLength(text) > MAX_POLICY_BYTES) throw bad(`the document is over ${MAX_POLICY_BYTES} bytes`);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (error) {
    throw bad(`not JSON: ${(error as Error).message}`);
  }
  if (!isObject(doc)) throw bad("the document must be a JSON object");
  for (const key of Object.keys(doc)) if (!["Version", "Id", "Statement"].includes(key)) throw bad(`unknown element ${key}`);
  if (doc.Version !== undefined && doc.Version !== "2012-10-17" && doc.Version !== "2008-10-17") {
    throw bad("Version: expected 2012-10-17 or 2008-10-17");
  }
  const statements = Array.isArray(doc.Statement) ? doc.Statement : doc.Statement === undefined ? [] : [doc.Statement];
  if (statements.length === 0) throw bad("Statement: at least one statement is required");
  statements.forEach((statement: unknown, i) => {
    const at = `Statement[${i}]`;
    if (!isObject(statement)) throw bad(`${at}: expected an object`);
    if (statement.Effect !== "Allow" && statement.Effect !== "Deny") throw bad(`${at}.Effect: expected Allow or Deny`);
    const principal = statement.Principal;
    if (principal === undefined) throw bad(`${at}.Principal: required`);
    if (principal !== "*" && !(isObject(principal) && Object.entries(principal).length > 0 && Object.entries(principal).every(([k, v]) => ["AWS", "Service"].includes(k) && strings(v)))) {
      throw bad(`${at}.Principal: expected "*" or {"AWS": account IDs or ARNs} or {"Service": names}`);
    }
    if (!strings(statement.Action)) throw bad(`${at}.Action: required, a string or a list of strings`);
    for (const action of ([] as string[]).concat(statement.Action)) {
      if (!/^ses:[A-Za-z*]+$/i.test(action)) throw bad(`${at}.Action: not an SES action: ${action}`);
    }
    if (!strings(statement.Resource)) throw bad(`${at}.Resource: required, this identity's ARN`);
    for (const resource of ([] as string[]).concat(statement.Resource)) {
      if (!wildcard(resource).test(identityArn)) throw bad(`${at}.Resource: ${resource} is not this identity (${identityArn})`);
    }
    if (statement.Condition !== undefined && !(isObject(statement.Condition) && Object.values(statement.Condition).every(isObject))) {
      throw bad(`${at}.Condition: expected {operator: {key: value}}`);
    }
  });
  return JSON.stringify(doc);
}

/** IAM's `*` and `?`; ARNs and action names compare without case, condition values with it. */
function wildcard(pattern: string, ignoreCase = true): RegExp {
  const escaped = pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${escaped}$`, ignoreCase ? "i" : "");
}

/** What a sending-authorization check asks of an identity's policies. */
export interface PolicyRequest {
  /** The caller's account: the principal is `arn:aws:iam::<account>:root`. */
  account: string;
  /** `ses:SendBounce` ... */
  action: string;
  /** The identity's ARN. */
  resource: string;
  /** `ses:FromAddress`, for conditions. */
  fromAddress: string;
}

type Statement = { Effect: "Allow" | "Deny"; Principal: unknown; Action: string | string[]; Resource: string | string[]; Condition?: Record<string, Record<string, unknown>> };

const STRING_CONDITIONS: Readonly<Record<string, (actual: string, expected: string) => boolean>> = {
  StringEquals: (a, e) => a === e,
  StringNotEquals: (a, e) => a !== e,
  StringEqualsIgnoreCase: (a, e) => a.toLowerCase() === e.toLowerCase(),
  StringNotEqualsIgnoreCase: (a, e) => a.toLowerCase() !== e.toLowerCase(),
  StringLike: (a, e) => wildcard(e, false).test(a),
  StringNotLike: (a, e) => !wildcard(e, false).test(a),
};

/** true, false, or null when the condition uses an operator or key this evaluator does not know. */
function conditionHolds(condition: Statement["Condition"], request: PolicyRequest): boolean | null {
  const keys: Record<string, string> = { "ses:fromaddress": request.fromAddress, "aws:principalaccount": request.account };
  for (const [operator, tests] of Object.entries(condition ?? {})) {
    const compare = STRING_CONDITIONS[operator];
    if (!compare) return null;
    for (const [key, expected] of Object.entries(tests)) {
      const actual = keys[key.toLowerCase()];
      if (actual === undefined) return null;
      const values = ([] as unknown[]).concat(expected).map(String);
      // Several values of one key: any may match; for the negated operators, none may.
      const holds = operator.includes("Not") ? values.every((value) => compare(actual, value)) : values.some((value) => compare(actual, value));
      if (!holds) return false;
    }
  }
  return true;
}

function principalMatches(principal: unknown, account: string): boolean {
  if (principal === "*") return true;
  const aws = (principal as { AWS?: string | string[] }).AWS;
  if (aws === undefined) return false;
  return ([] as string[]).concat(aws).some((p) => p === "*" || p === account || p === `arn:aws:iam::${account}:root`);
}

/**
 * Whether an identity's policies allow the request, as IAM decides (docs/behaviour.md §12): an
 * explicit Deny wins, then any Allow. The principal is the caller's account (API keys map to
 * accounts, not users). A condition this evaluator cannot decide makes an Allow not apply and a
 * Deny apply: when in doubt, refuse.
 */
export function policiesAllow(documents: readonly string[], request: PolicyRequest): boolean {
  let allowed = false;
  for (const document of documents) {
    const parsed = JSON.parse(document) as { Statement: Statement | Statement[] };
    for (const statement of ([] as Statement[]).concat(parsed.Statement)) {
      const applies =
        principalMatches(statement.Principal, request.account) &&
        ([] as string[]).concat(statement.Action).some((action) => action === "*" || wildcard(action).test(request.action)) &&
        ([] as string[]).concat(statement.Resource).some((resource) => wildcard(resource).test(request.resource));
      if (!applies) continue;
      const holds = conditionHolds(statement.Condition, request);
      if (statement.Effect === "Deny" && holds !== false) return false;
      if (statement.Effect === "Allow" && holds === true) allowed = true;
    }
  }
  return allowed;
}

export function identityArn(region: string, account: string, identity: string): string {
  return `arn:aws:ses:${region}:${account}:identity/${identity}`;
}

function withPolicies(state: ScopeState, record: IdentityRecord, policies: Record<string, string>): ScopeState {
  const identities = new Map(state.identities).set(record.identity, Object.freeze({ ...record, policies: Object.freeze(policies) }));
  return Object.freeze({ ...state, identities });
}

export const POLICY_OPERATIONS: readonly Operation[] = [
  operation("PutIdentityPolicy", { writes: true }, async (params, context) => {
    const identity = canonicalIdentity(params.requiredString("Identity"));
    const name = policyName(params, "PolicyName");
    const text = params.requiredString("Policy");
    const compact = checkPolicyDocument(text, identityArn(context.scope.region, context.scope.account, identity));
    await write(context, "PutIdentityPolicy", { Identity: identity, PolicyName: name }, (state) => {
      const record = knownIdentity(state, identity);
      if (!(name in record.policies) && Object.keys(record.policies).length >= MAX_POLICIES) {
        throw new SesError("LimitExceeded", `An identity has at most ${MAX_POLICIES} policies`);
      }
      if (record.policies[name] === compact) return { state };
      return { state: withPolicies(state, record, { ...record.policies, [name]: compact }) };
    });
    return {};
  }),
  operation("GetIdentityPolicies", { writes: false }, async (params, context) => {
    const identity = canonicalIdentity(params.requiredString("Identity"));
    const names = params.strings("PolicyNames");
    if (names === undefined) throw new SesError("MissingParameter", "The request must contain the parameter PolicyNames");
    if (names.length > MAX_POLICIES) throw new SesError("InvalidParameterValue", `PolicyNames: at most ${MAX_POLICIES} names`);
    names.forEach((name) => policyName(params, "PolicyNames", name));
    return read(context, (state) => {
      const policies = state.identities.get(identity)?.policies ?? {};
      return { Policies: new XmlMap(names.flatMap((name) => (policies[name] === undefined ? [] : [[name, policies[name]] as const]))) };
    });
  }),
  operation("ListIdentityPolicies", { writes: false }, async (params, context) => {
    const identity = canonicalIdentity(params.requiredString("Identity"));
    return read(context, (state) => ({ PolicyNames: Object.keys(state.identities.get(identity)?.policies ?? {}) }));
  }),
  // Documented to succeed when no policy of that name exists.
  operation("DeleteIdentityPolicy", { writes: true }, async (params, context) => {
    const identity = canonicalIdentity(params.requiredString("Identity"));
    const name = policyName(params, "PolicyName");
    await write(context, "DeleteIdentityPolicy", { Identity: identity, PolicyName: name }, (state) => {
      const record = state.identities.get(identity);
      if (!record || !(name in record.policies)) return { state };
      const policies = { ...record.policies };
      delete policies[name];
      return { state: withPolicies(state, record, policies) };
    });
    return {};
  }),
];
