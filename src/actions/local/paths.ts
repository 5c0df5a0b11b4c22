import { isAbsolute, relative, resolve, sep } from "node:path";
import { ActionError } from "../backend.js";

function unsafe(what: string, value: string, why: string): ActionError {
  return new ActionError("permanent", `${what} ${JSON.stringify(value)} cannot be stored under the data directory: ${why}`);
}

/**
 * Checks that a name from a rule or a message can be one file or directory name. Names are
 * taken literally (S3 does not percent-decode keys, so `%2e%2e` is a harmless file name);
 * only what the filesystem would interpret is refused.
 */
export function safeSegment(name: string, what: string, whole = name): string {
  if (name === "") throw unsafe(what, whole, whole.startsWith("/") ? "absolute path" : "empty path segment");
  if (name === "." || name === "..") throw unsafe(what, whole, `"${name}" path segment`);
  if (name.includes("\0")) throw unsafe(what, whole, "NUL byte");
  // A separator on Windows, and never part of a name we could have been given legitimately.
  if (name.includes("\\")) throw unsafe(what, whole, "backslash");
  if (name.includes("/")) throw unsafe(what, whole, "slash");
  return name;
}

/**
 * Resolves segments under root, refusing anything that would land outside it. The segment
 * checks already make escaping impossible; the final containment check is what keeps it so
 * if a future caller forgets one.
 */
export function resolveInside(root: string, segments: readonly string[], what: string, whole: string): string {
  for (const segment of segments) safeSegment(segment, what, whole);
  const resolved = resolve(root, ...segments);
  const rel = relative(resolve(root), resolved);
  if (rel === "" || rel === ".." || rel.startsWith(`..${sep}`) || isAbsolute(rel)) {
    throw unsafe(what, whole, "resolves outside its directory");
  }
  return resolved;
}

function arnParts(arn: string, service: string, what: string): string[] {
  const parts = arn.split(":");
  if (parts.length < 6 || parts[0] !== "arn" || parts[2] !== service) {
    throw new ActionError("permanent", `${what} ${JSON.stringify(arn)} is not an ${service} ARN`);
  }
  return parts;
}

/** `arn:aws:sns:<region>:<account>:<name>` -> name. */
export function topicName(topicArn: string): string {
  const parts = arnParts(topicArn, "sns", "topic");
  const name = parts.length === 6 ? parts[5] : undefined;
  if (name === undefined) throw new ActionError("permanent", `topic ARN ${JSON.stringify(topicArn)} has no topic name`);
  return safeSegment(name, "topic name", topicArn);
}

export interface FunctionName {
  name: string;
  /** The ARN without its version or alias qualifier. */
  unqualifiedArn: string;
}

/** `arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]`. */
export function functionName(functionArn: string): FunctionName {
  const parts = arnParts(functionArn, "lambda", "function");
  const name = parts[6];
  if (parts[5] !== "function" || name === undefined || parts.length > 8) {
    throw new ActionError("permanent", `function ARN ${JSON.stringify(functionArn)} is not of the form arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]`);
  }
  return { name: safeSegment(name, "function name", functionArn), unqualifiedArn: parts.slice(0, 7).join(":") };
}

/** `arn:aws:workmail:<region>:<account>:organization/<id>` -> id. */
export function organizationId(organizationArn: string): string {
  const parts = arnParts(organizationArn, "workmail", "organization");
  const resource = parts.length === 6 ? parts[5] : undefined;
  if (resource === undefined || !resource.startsWith("organization/")) {
    throw new ActionError("permanent", `organization ARN ${JSON.stringify(organizationArn)} is not of the form arn:aws:workmail:<region>:<account>:organization/<id>`);
  }
  return safeSegment(resource.slice("organization/".length), "organization ID", organizationArn);
}
