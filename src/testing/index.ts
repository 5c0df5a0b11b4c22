import { readFile } from "node:fs/promises";
import { recordingExecutor } from "../actions/record.js";
import type { RecordedCall } from "../actions/record.js";
import { parseMessageHead } from "../mail/headers.js";
import { replayHead } from "../replay/replay.js";
import type { ReplayResult } from "../replay/replay.js";
import type { ReceivedMessage } from "../actions/message.js";
import type { ActionTrace, RuleTrace } from "../rules/evaluate.js";
import { compileFilters } from "../rules/filters.js";
import { loadFiltersFile, loadRuleSetFile } from "../config/rule-files.js";
import { parseFilters, parseRuleSet, RuleSetValidationError } from "../rules/parse.js";
import type { ActionParamsByType, ActionType, IpFilter, RuleSet } from "../rules/model.js";
import { identitiesFrom, identitiesOfRules } from "../rules/recipients.js";

export type { ActionTrace, RuleTrace, RecordedCall, RuleSet, IpFilter };

/** Loads a rule set file (SES JSON); throws with every validation error when invalid. */
export async function loadRuleSet(path: string): Promise<RuleSet> {
  return loadRuleSetFile(path);
}

/** A rule set from an object in SES JSON, e.g. the parsed output of describe-active-receipt-rule-set. */
export function ruleSetFromJson(json: unknown, source = "rule set"): RuleSet {
  const parsed = parseRuleSet(json);
  if (!parsed.ok) throw new RuleSetValidationError(source, parsed.issues);
  return parsed.value;
}

export async function loadFilters(path: string): Promise<IpFilter[]> {
  return loadFiltersFile(path);
}

export function filtersFromJson(json: unknown, source = "filters"): IpFilter[] {
  const parsed = parseFilters(json);
  if (!parsed.ok) throw new RuleSetValidationError(source, parsed.issues);
  return parsed.value;
}

export interface MessageSpec {
  from?: string;
  to?: string | string[];
  cc?: string | string[];
  subject?: string;
  /** Extra header fields, in order, after the standard ones. */
  headers?: Record<string, string> | [name: string, value: string][];
  body?: string;
}

const list = (value: string | string[] | undefined): string[] => (value === undefined ? [] : [value].flat());

/** Builds a small RFC 5322 message, enough for rule-set tests. */
export function message(spec: MessageSpec = {}): Buffer {
  const lines: string[] = [];
  lines.push(`From: ${spec.from ?? "sender@example.net"}`);
  const to = list(spec.to);
  if (to.length) lines.push(`To: ${to.join(", ")}`);
  const cc = list(spec.cc);
  if (cc.length) lines.push(`Cc: ${cc.join(", ")}`);
  lines.push(`Subject: ${spec.subject ?? "Test message"}`);
  lines.push("Date: Mon, 23 Nov 2026 12:00:00 +0000");
  lines.push("Message-ID: <test@receiptd.invalid>");
  lines.push("MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8");
  const extra = Array.isArray(spec.headers) ? spec.headers : Object.entries(spec.headers ?? {});
  for (const [name, value] of extra) lines.push(`${name}: ${value}`);
  return Buffer.from(`${lines.join("\r\n")}\r\n\r\n${(spec.body ?? "Hello.\r\n").replace(/\r?\n/g, "\r\n")}`);
}

export async function loadMessage(path: string): Promise<Buffer> {
  return readFile(path);
}

export interface EvaluateOptions {
  /** Verified identities (domains or addresses); default: the domains the rule set names. */
  identities?: string[];
  /** Envelope sender; default: from the message (Return-Path, else From). */
  mailFrom?: string;
  /** Envelope recipients; default: from the message (Delivered-To/X-Original-To, else To+Cc+Bcc). */
  recipients?: string[];
  tls?: boolean;
  /** The client's address, checked against `filters`; 127.0.0.1 in Received when absent. */
  clientIp?: string;
  /** The client's EHLO name for Received; `localhost` by default. */
  helo?: string;
  /** Our host name for Received, as the daemon's `hostname`; the machine's name by default. */
  hostname?: string;
  filters?: IpFilter[];
  maxRecipients?: number;
  /** What each RequestResponse Lambda returns, by function ARN. */
  lambdaResults?: Record<string, string>;
  /** SES's per-action size limits; on by default as in the daemon. */
  strict?: boolean;
}

export interface Evaluation extends ReplayResult {
  /** Every action call in execution order, with the message as that action saw it. */
  calls: RecordedCall[];
}

/**
 * Evaluates one message as receiptd would on receipt, with every action recorded instead of run.
 * The actions see the message the daemon would store (docs/behaviour.md §5): Return-Path,
 * Received and the scan verdict headers on top (`calls[i].prependedHeaders`), CRLF line ends,
 * the message's own Return-Path removed.
 */
export async function evaluateMessage(
  ruleSet: RuleSet,
  raw: Buffer | string,
  options: EvaluateOptions = {},
): Promise<Evaluation> {
  const bytes = Buffer.isBuffer(raw) ? raw : Buffer.from(raw);
  const head = parseMessageHead(bytes);
  const executor = recordingExecutor<ReceivedMessage>({
    sizeOf: (m) => m.size,
    lambdaResults: options.lambdaResults ?? {},
    strict: options.strict ?? true,
  });
  const result = await replayHead(
    "<message>",
    head,
    {
      ruleSet,
      identities: options.identities ? identitiesFrom(options.identities) : identitiesOfRules(ruleSet.rules),
      filters: options.filters ? compileFilters(options.filters) : null,
      tls: options.tls ?? false,
      executor,
      ...(options.mailFrom === undefined ? {} : { mailFrom: options.mailFrom }),
      ...(options.recipients === undefined ? {} : { recipients: options.recipients }),
      ...(options.clientIp === undefined ? {} : { clientIp: options.clientIp }),
      ...(options.helo === undefined ? {} : { helo: options.helo }),
      ...(options.hostname === undefined ? {} : { hostname: options.hostname }),
      ...(options.maxRecipients === undefined ? {} : { maxRecipients: options.maxRecipients }),
    },
    bytes,
  );
  return { ...result, calls: executor.calls };
}

/** The rules that matched, in evaluation order. */
export function matchedRules(evaluation: Evaluation): string[] {
  return evaluation.trace?.rules.map((rule) => rule.name) ?? [];
}

/** Actions of a type that ran (outcome done), optionally only those of one rule. */
export function actionsRun<T extends ActionType>(
  evaluation: Evaluation,
  type: T,
  rule?: string,
): (ActionTrace & { type: T; params: ActionParamsByType[T] })[] {
  return (evaluation.trace?.rules ?? [])
    .filter((r) => rule === undefined || r.name === rule)
    .flatMap((r) => r.actions)
    .filter((a): a is ActionTrace & { type: T; params: ActionParamsByType[T] } => a.type === type && a.outcome === "done");
}

/** Where evaluation ended early: the rule and why, or null when it ran to the end. */
export function stoppedAt(evaluation: Evaluation): { rule: string; reason: NonNullable<RuleTrace["stop"]> } | null {
  const last = evaluation.trace?.rules.at(-1);
  if (!last || (last.stop !== "Stop" && last.stop !== "STOP_RULE_SET")) return null;
  return { rule: last.name, reason: last.stop };
}
