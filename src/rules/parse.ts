import type { IpFilter, RuleSet } from "./model.js";
import { parseFilters, parseRuleSet } from "./validate.js";
import type { Parsed, ValidationIssue } from "./validate.js";

export { parseFilters, parseRuleSet } from "./validate.js";
export type { Parsed, ValidationIssue } from "./validate.js";

/** A rule set or filters document that cannot be used; `message` has one line per issue. */
export class RuleSetValidationError extends Error {
  override readonly name = "RuleSetValidationError";
  readonly source: string;
  readonly issues: ValidationIssue[];

  constructor(source: string, issues: ValidationIssue[], options?: ErrorOptions) {
    const lines = issues.map((issue) => `${source}: ${issue.path === "" ? "" : `${issue.path}: `}${issue.message}`);
    super(lines.join("\n"), options);
    this.source = source;
    this.issues = issues;
  }
}

const AT_POSITION = / at position (\d+)(?: \(line \d+ column \d+\))?$/;
const END_OF_INPUT = "Unexpected end of JSON input";
/** V8 quotes a short text whole, a longer one from ten characters before the token to ten after, marking cuts "...". */
const UNEXPECTED_TOKEN = /^(Unexpected token '([\s\S])'), (\.\.\.)?"([\s\S]*)"(\.\.\.)? is not valid JSON$/;
const CONTEXT = 10;

/** Whether JSON.parse fails on `prefix` only at its end, so that more text could still make it valid. */
function isViablePrefix(prefix: string): boolean {
  try {
    JSON.parse(prefix);
    return true;
  } catch (error) {
    const message = (error as Error).message;
    const at = AT_POSITION.exec(message);
    return message === END_OF_INPUT || (at !== null && Number(at[1]) >= prefix.length);
  }
}

/**
 * V8 gives no position for an unexpected token, only the text around it; the offset follows
 * from where that context was cut. A text short enough to be quoted whole is searched instead.
 */
function unexpectedTokenOffset(text: string, match: RegExpExecArray): number | undefined {
  const [, , token = "", cutBefore, context = "", cutAfter] = match;
  if (cutBefore === undefined && cutAfter === undefined) {
    for (let offset = text.indexOf(token); offset >= 0; offset = text.indexOf(token, offset + 1)) {
      if (isViablePrefix(text.slice(0, offset)) && !isViablePrefix(text.slice(0, offset + 1))) return offset;
    }
    return undefined;
  }
  let offset = context.length - CONTEXT;
  if (cutBefore !== undefined) {
    const start = cutAfter === undefined ? text.length - context.length : text.indexOf(context);
    offset = start < 0 ? -1 : start + CONTEXT;
  }
  // A V8 that cuts its context differently must not make us point at the wrong character.
  return text[offset] === token ? offset : undefined;
}

function locateJsonError(text: string, message: string): { offset?: number; reason: string } {
  const at = AT_POSITION.exec(message);
  if (at) return { offset: Number(at[1]), reason: message.slice(0, at.index).replace(/ in JSON$/, "") };
  // Pointing past trailing blank lines would name a line the reader cannot see as the culprit.
  if (message === END_OF_INPUT) return { offset: text.trimEnd().length, reason: message };
  const token = UNEXPECTED_TOKEN.exec(message);
  if (!token) return { reason: message };
  const reason = token[1] ?? message;
  const offset = unexpectedTokenOffset(text, token);
  return offset === undefined ? { reason } : { offset, reason };
}

function jsonSyntaxIssue(text: string, error: SyntaxError): ValidationIssue {
  const { offset, reason } = locateJsonError(text, error.message);
  if (offset === undefined) return { path: "", message: `invalid JSON: ${reason}` };
  const before = text.slice(0, offset);
  const lineStart = before.lastIndexOf("\n") + 1;
  const line = before.split("\n").length;
  return { path: "", message: `invalid JSON at line ${line}, column ${offset - lineStart + 1}: ${reason}` };
}

function parseText<T>(text: string, source: string, parse: (doc: unknown) => Parsed<T>): T {
  // Editors on Windows may save a byte order mark, which JSON.parse rejects.
  const json = text.startsWith("\uFEFF") ? text.slice(1) : text;
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch (error) {
    if (!(error instanceof SyntaxError)) throw error;
    throw new RuleSetValidationError(source, [jsonSyntaxIssue(json, error)], { cause: error });
  }
  const parsed = parse(doc);
  if (!parsed.ok) throw new RuleSetValidationError(source, parsed.issues);
  return parsed.value;
}

/** Parses the JSON text of a rule set; throws RuleSetValidationError naming `source` with every issue. */
export function parseRuleSetText(text: string, source: string): RuleSet {
  return parseText(text, source, parseRuleSet);
}

/** Parses the JSON text of `aws ses list-receipt-filters`; throws like parseRuleSetText. */
export function parseFiltersText(text: string, source: string): IpFilter[] {
  return parseText(text, source, parseFilters);
}
