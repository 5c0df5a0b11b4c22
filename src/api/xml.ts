import { XMLBuilder } from "fast-xml-parser";
import { XmlMap } from "./operation.js";
import type { SesError, XmlStruct, XmlValue } from "./operation.js";

const NAMESPACE = "http://ses.amazonaws.com/doc/2010-12-01/";

const builder = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: "@_", suppressEmptyNode: true, processEntities: true });

type Built = string | Built[] | { [name: string]: Built };

/**
 * The builder's tree for one member. Lists are `<member>` items and maps `<entry><key><value>`,
 * as the JS SDK reads nothing else (reference §1.3); an empty list is an empty element, which
 * botocore needs to see the key at all.
 */
function node(value: XmlValue): Built {
  if (value instanceof Date) return value.toISOString();
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") return String(value);
  if (typeof value === "string") return value;
  if (Array.isArray(value)) return value.length === 0 ? "" : { member: value.map(node) };
  if (value instanceof XmlMap) {
    return value.entries.length === 0 ? "" : { entry: value.entries.map(([key, entry]) => ({ key, value: node(entry) })) };
  }
  return struct(value);
}

function struct(value: XmlStruct): { [name: string]: Built } {
  const out: { [name: string]: Built } = {};
  for (const [name, member] of Object.entries(value)) if (member !== undefined) out[name] = node(member);
  return out;
}

/** `<{Op}Response>` with `<{Op}Result>` (always, even empty, when the operation has one) and the request ID. */
export function successXml(operation: string, hasResult: boolean, result: XmlStruct | undefined, requestId: string): string {
  const body: { [name: string]: Built } = { "@_xmlns": NAMESPACE } as { [name: string]: Built };
  if (hasResult) body[`${operation}Result`] = struct(result ?? {});
  body.ResponseMetadata = { RequestId: requestId };
  return builder.build({ [`${operation}Response`]: body }) as string;
}

export function errorXml(error: SesError, requestId: string): string {
  const detail: { [name: string]: Built } = { Type: error.type, Code: error.code, Message: error.message, ...error.members };
  return builder.build({ ErrorResponse: { "@_xmlns": NAMESPACE, Error: detail, RequestId: requestId } }) as string;
}
