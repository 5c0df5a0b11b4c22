/**
 * A small metrics registry rendered in the Prometheus text exposition format (version 0.0.4):
 * the daemon needs counters, gauges and fixed-bucket histograms, nothing a client library adds.
 */

import type { DeadLetterCause } from "../spool/processor.js";

/** Label values by label name; a metric without labels takes none. `V` narrows the values a label may take. */
type LabelArgs<L extends string, V extends Record<L, string> = Record<L, string>> = [L] extends [never] ? [] : [labels: V];

export interface Counter<L extends string = never, V extends Record<L, string> = Record<L, string>> {
  inc(...args: [...LabelArgs<L, V>, by?: number]): void;
  get(...args: LabelArgs<L, V>): number;
}

export interface Gauge<L extends string = never> {
  set(...args: [...LabelArgs<L>, value: number]): void;
  inc(...args: [...LabelArgs<L>, by?: number]): void;
  dec(...args: [...LabelArgs<L>, by?: number]): void;
  get(...args: LabelArgs<L>): number;
  /**
   * Runs `collect` before every scrape, for values that are cheaper to read than to track
   * (the spool depth). It sets the gauge itself; when it fails, the previous values stay.
   */
  onScrape(collect: (gauge: Gauge<L>) => void | Promise<void>): void;
}

export interface HistogramSnapshot {
  /** Cumulative counts, one per bucket upper bound, in the order of `buckets`. */
  counts: number[];
  sum: number;
  count: number;
}

export interface Histogram<L extends string = never> {
  readonly buckets: readonly number[];
  observe(...args: [...LabelArgs<L>, value: number]): void;
  get(...args: LabelArgs<L>): HistogramSnapshot;
}

export interface Registry {
  counter<L extends string = never>(name: string, help: string, labelNames?: readonly L[]): Counter<L>;
  gauge<L extends string = never>(name: string, help: string, labelNames?: readonly L[]): Gauge<L>;
  /** `buckets`: upper bounds in seconds or whatever unit the name says; `+Inf` is added. */
  histogram<L extends string = never>(
    name: string,
    help: string,
    buckets: readonly number[],
    labelNames?: readonly L[],
  ): Histogram<L>;
  /** The exposition text, after the scrape callbacks have run. */
  render(): Promise<string>;
}

export interface RegistryOptions {
  /** Told about a failing scrape callback; the scrape itself goes on with the previous values. */
  onCollectError?: (metric: string, error: unknown) => void;
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Latencies of SES actions: a local write takes milliseconds, a Lambda RequestResponse up to its timeout. */
const ACTION_SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] as const;
/** From the end of DATA to the 250 reply: dominated by the fsyncs, so finer at the low end. */
const ACCEPT_SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5] as const;

/** DNS-bound: milliseconds from a local resolver's cache, up to the budget (3 s by default) and a little past. */
const AUTH_SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10] as const;
const DEAD_LETTER_CAUSES: readonly DeadLetterCause[] = ["permanent_failure", "retry_window_ended", "snapshot_missing", "unprocessable"];

function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function formatValue(value: number): string {
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

interface Series<V> {
  labels: string[];
  value: V;
}

interface Family {
  name: string;
  render(lines: string[]): void;
  collect?: () => Promise<void>;
}

function labelText(names: readonly string[], values: readonly string[], extra?: [string, string]): string {
  const pairs = names.map((name, i) => `${name}="${escapeLabelValue(values[i] ?? "")}"`);
  if (extra) pairs.push(`${extra[0]}="${escapeLabelValue(extra[1])}"`);
  return pairs.length === 0 ? "" : `{${pairs.join(",")}}`;
}

/**
 * Series of one metric, keyed by their label values in label-name order. The rest-parameter
 * signatures put the labels first when the metric has any, so the arguments are split here.
 */
class SeriesMap<V> {
  private readonly series = new Map<string, Series<V>>();

  constructor(
    readonly labelNames: readonly string[],
    private readonly initial: () => V,
  ) {}

  split(args: unknown[]): { labels: string[]; rest: unknown[] } {
    if (this.labelNames.length === 0) return { labels: [], rest: args };
    const given = (args[0] ?? {}) as Record<string, unknown>;
    return { labels: this.labelNames.map((name) => String(given[name] ?? "")), rest: args.slice(1) };
  }

  at(labels: string[]): Series<V> {
    const key = JSON.stringify(labels);
    let entry = this.series.get(key);
    if (!entry) {
      entry = { labels, value: this.initial() };
      this.series.set(key, entry);
    }
    return entry;
  }

  peek(labels: string[]): V | undefined {
    return this.series.get(JSON.stringify(labels))?.value;
  }

  entries(): Iterable<Series<V>> {
    return this.series.values();
  }
}

function checkNames(name: string, labelNames: readonly string[], reserved: readonly string[]): void {
  if (!METRIC_NAME.test(name)) throw new Error(`invalid metric name ${JSON.stringify(name)}`);
  for (const label of labelNames) {
    if (!LABEL_NAME.test(label) || label.startsWith("__") || reserved.includes(label)) {
      throw new Error(`invalid label name ${JSON.stringify(label)} for ${name}`);
    }
  }
}

function header(lines: string[], name: string, help: string, type: string): void {
  lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
}

function numberArg(value: unknown, fallback: number | undefined, metric: string): number {
  const number = value === undefined ? fallback : value;
  if (typeof number !== "number" || Number.isNaN(number)) throw new TypeError(`${metric}: expected a number`);
  return number;
}

export function createRegistry(options: RegistryOptions = {}): Registry {
  const families: Family[] = [];

  const register = (family: Family): void => {
    if (families.some((known) => known.name === family.name)) throw new Error(`metric ${family.name} registered twice`);
    families.push(family);
  };

  function counter<L extends string = never>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
    checkNames(name, labelNames, []);
    const series = new SeriesMap<number>(labelNames, () => 0);
    // An unlabelled counter exists from the start, so that rate() sees its first increase.
    if (labelNames.length === 0) series.at([]);
    register({
      name,
      render(lines) {
        header(lines, name, help, "counter");
        for (const { labels, value } of series.entries()) {
          lines.push(`${name}${labelText(labelNames, labels)} ${formatValue(value)}`);
        }
      },
    });
    return {
      inc(...args: unknown[]) {
        const { labels, rest } = series.split(args);
        const by = numberArg(rest[0], 1, name);
        if (by < 0) throw new RangeError(`${name}: a counter cannot decrease`);
        series.at(labels).value += by;
      },
      get(...args: unknown[]) {
        return series.peek(series.split(args).labels) ?? 0;
      },
    } as Counter<L>;
  }

  function gauge<L extends string = never>(name: string, help: string, labelNames: readonly L[] = []): Gauge<L> {
    checkNames(name, labelNames, []);
    const series = new SeriesMap<number>(labelNames, () => 0);
    if (labelNames.length === 0) series.at([]);
    const collectors: ((gauge: Gauge<L>) => void | Promise<void>)[] = [];
    const add = (args: unknown[], sign: number, fallback: number | undefined, set: boolean): void => {
      const { labels, rest } = series.split(args);
      const value = numberArg(rest[0], fallback, name);
      const entry = series.at(labels);
      entry.value = set ? value : entry.value + sign * value;
    };
    const self = {
      set: (...args: unknown[]) => add(args, 1, undefined, true),
      inc: (...args: unknown[]) => add(args, 1, 1, false),
      dec: (...args: unknown[]) => add(args, -1, 1, false),
      get: (...args: unknown[]) => series.peek(series.split(args).labels) ?? 0,
      onScrape: (collect: (gauge: Gauge<L>) => void | Promise<void>) => {
        collectors.push(collect);
      },
    } as Gauge<L>;
    register({
      name,
      render(lines) {
        header(lines, name, help, "gauge");
        for (const { labels, value } of series.entries()) {
          lines.push(`${name}${labelText(labelNames, labels)} ${formatValue(value)}`);
        }
      },
      async collect() {
        for (const collect of collectors) {
          try {
            await collect(self);
          } catch (error) {
            options.onCollectError?.(name, error);
          }
        }
      },
    });
    return self;
  }

  function histogram<L extends string = never>(
    name: string,
    help: string,
    buckets: readonly number[],
    labelNames: readonly L[] = [],
  ): Histogram<L> {
    checkNames(name, labelNames, ["le"]);
    const bounds = [...buckets];
    if (bounds.length === 0 || bounds.some((bound, i) => !Number.isFinite(bound) || (i > 0 && bound <= bounds[i - 1]!))) {
      throw new Error(`${name}: buckets must be finite and strictly increasing`);
    }
    // Counts per bucket, not cumulative: an observation touches one slot; rendering sums them up.
    const series = new SeriesMap<{ counts: number[]; sum: number; count: number }>(labelNames, () => ({
      counts: bounds.map(() => 0),
      sum: 0,
      count: 0,
    }));
    if (labelNames.length === 0) series.at([]);
    const cumulative = (counts: number[]): number[] => {
      let running = 0;
      return counts.map((count) => (running += count));
    };
    register({
      name,
      render(lines) {
        header(lines, name, help, "histogram");
        for (const { labels, value } of series.entries()) {
          const running = cumulative(value.counts);
          bounds.forEach((bound, i) => {
            lines.push(`${name}_bucket${labelText(labelNames, labels, ["le", formatValue(bound)])} ${running[i]}`);
          });
          lines.push(`${name}_bucket${labelText(labelNames, labels, ["le", "+Inf"])} ${value.count}`);
          lines.push(`${name}_sum${labelText(labelNames, labels)} ${formatValue(value.sum)}`);
          lines.push(`${name}_count${labelText(labelNames, labels)} ${value.count}`);
        }
      },
    });
    return {
      buckets: bounds,
      observe(...args: unknown[]) {
        const { labels, rest } = series.split(args);
        const value = numberArg(rest[0], undefined, name);
        const entry = series.at(labels).value;
        const slot = bounds.findIndex((bound) => value <= bound);
        if (slot >= 0) entry.counts[slot]! += 1;
        entry.sum += value;
        entry.count += 1;
      },
      get(...args: unknown[]) {
        const value = series.peek(series.split(args).labels);
        if (!value) return { counts: bounds.map(() => 0), sum: 0, count: 0 };
        return { counts: cumulative(value.counts), sum: value.sum, count: value.count };
      },
    } as Histogram<L>;
  }

  async function render(): Promise<string> {
    for (const family of families) await family.collect?.();
    const lines: string[] = [];
    for (const family of families) family.render(lines);
    return `${lines.join("\n")}\n`;
  }

  return { counter, gauge, histogram, render };
}

/** Where the conversation was refused: "command" is a command line cut by its deadline. */
export type SmtpStage = "connect" | "command" | "mail" | "rcpt" | "data";

/**
 * The `reason` label of receiptd_smtp_refused_total, a closed set (the daemon maps each of the
 * listener's refusal reasons to one, src/daemon/daemon.ts):
 * - connect: ip_filter (a Block filter), too_many_connections, too_many_connections_from_ip,
 *   too_many_pending (PROXY headers or TLS handshakes waiting), shutting_down,
 *   proxy_header_invalid, proxy_header_not_allowed, tls_handshake_failed;
 * - mail: shutting_down, smtputf8_required, invalid_utf8, size (declared SIZE);
 * - rcpt: relaying_denied, mailbox_unavailable, tls_required, too_many_recipients,
 *   smtputf8_required, invalid_utf8, unstorable_local_part;
 * - data: size, smuggling, header_limit, accept_failed, connection_lost;
 * - command, data: deadline.
 */
export type SmtpRefusalReason =
  | "ip_filter"
  | "too_many_connections"
  | "too_many_connections_from_ip"
  | "too_many_pending"
  | "shutting_down"
  | "proxy_header_invalid"
  | "proxy_header_not_allowed"
  | "tls_handshake_failed"
  | "smtputf8_required"
  | "invalid_utf8"
  | "relaying_denied"
  | "mailbox_unavailable"
  | "tls_required"
  | "too_many_recipients"
  | "unstorable_local_part"
  | "size"
  | "smuggling"
  | "header_limit"
  | "accept_failed"
  | "connection_lost"
  | "deadline";

/** The daemon's metric set; more metrics can be added through the registry methods it also has. */
export interface Metrics extends Registry {
  smtpConnections: Counter;
  smtpConnectionsOpen: Gauge;
  smtpMessagesAccepted: Counter;
  smtpRefused: Counter<"stage" | "reason", { stage: SmtpStage; reason: SmtpRefusalReason }>;
  smtpAcceptSeconds: Histogram;
  /** Set through `onScrape` by whoever owns the spool. */
  spoolDepth: Gauge;
  /** `type`: SES action type (S3, SNS, ...); `outcome`: e.g. done, retry, failed. */
  actions: Counter<"type" | "outcome">;
  actionSeconds: Histogram<"type">;
  /** `type`: SES action type (Lambda, SNS): failures after the action itself succeeded. */
  actionBackgroundFailures: Counter<"type">;
  /** `reason`: the dead letter's cause (src/spool/processor.ts DeadLetterCause). */
  messagesDeadLettered: Counter<"reason", { reason: DeadLetterCause }>;
  /** `engine`: spamd or clamd; `verdict`: PASS, FAIL, GRAY or PROCESSING_FAILED. */
  scans: Counter<"engine" | "verdict">;
  /** `engine`: seconds one scan took, deadline included. */
  scanSeconds: Histogram<"engine">;
  /** Dead letters put back into processing (`receiptd messages requeue`). */
  messagesRequeued: Counter;
  /** `outcome`: done, stopped (by a Stop action or a Lambda's disposition) or dead. */
  messagesProcessed: Counter<"outcome", { outcome: "done" | "stopped" | "dead" }>;
  /** `rule`: a rule name, bounded by the rule set's limits on rules. */
  ruleMatches: Counter<"rule">;
  /** `check`: spf, dkim or dmarc; `verdict`: the SES verdict (PASS, FAIL, GRAY, PROCESSING_FAILED). */
  authResults: Counter<"check" | "verdict">;
  authSeconds: Histogram;
  /** Authentications whose DNS budget ran out before all their queries were answered. */
  authDnsTimeouts: Counter;
  /** `result`: success or failure. */
  configReloads: Counter<"result">;
  /** SES API calls; `outcome` is `ok` or the SES error code, `operation` `unknown` for unknown actions. */
  apiRequests: Counter<"operation" | "outcome">;
  apiSeconds: Histogram<"operation">;
}

export function createMetrics(options: RegistryOptions = {}): Metrics {
  const registry = createRegistry(options);
  const metrics: Metrics = {
    ...registry,
    smtpConnections: registry.counter("receiptd_smtp_connections_total", "SMTP connections accepted by the listeners."),
    smtpConnectionsOpen: registry.gauge("receiptd_smtp_connections_open", "SMTP connections currently open."),
    smtpMessagesAccepted: registry.counter(
      "receiptd_smtp_messages_accepted_total",
      "Messages answered with 250 after DATA (on disk, rules pending).",
    ),
    smtpRefused: registry.counter(
      "receiptd_smtp_refused_total",
      "SMTP commands refused, by stage (connect, mail, rcpt, data; command or data with reason deadline) and reason.",
      ["stage", "reason"],
    ),
    smtpAcceptSeconds: registry.histogram(
      "receiptd_smtp_accept_seconds",
      "Seconds from the end of the DATA stream to the 250 reply, fsyncs included.",
      ACCEPT_SECONDS_BUCKETS,
    ),
    spoolDepth: registry.gauge("receiptd_spool_depth", "Accepted messages whose rule evaluation is not finished."),
    actions: registry.counter("receiptd_actions_total", "Receipt rule actions run, by action type and outcome.", [
      "type",
      "outcome",
    ]),
    actionSeconds: registry.histogram(
      "receiptd_action_seconds",
      "Seconds one attempt of a receipt rule action took, by action type.",
      ACTION_SECONDS_BUCKETS,
      ["type"],
    ),
    actionBackgroundFailures: registry.counter(
      "receiptd_action_background_failures_total",
      "Failures after a receipt rule action succeeded (an Event Lambda that threw, an SNS HTTP subscriber that stayed down), by action type.",
      ["type"],
    ),
    messagesDeadLettered: registry.counter(
      "receiptd_messages_dead_lettered_total",
      "Messages moved to the dead-letter area, by reason (permanent_failure, retry_window_ended, snapshot_missing, unprocessable).",
      ["reason"],
    ),
    scans: registry.counter("receiptd_scans_total", "Spam and virus scans, by engine and SES verdict.", ["engine", "verdict"]),
    scanSeconds: registry.histogram("receiptd_scan_seconds", "Seconds one scan took, by engine.", ACTION_SECONDS_BUCKETS, ["engine"]),
    messagesRequeued: registry.counter("receiptd_messages_requeued_total", "Dead letters put back into processing by receiptd messages requeue."),
    messagesProcessed: registry.counter(
      "receiptd_messages_processed_total",
      "Messages whose rule evaluation ended, by outcome (done, stopped, dead).",
      ["outcome"],
    ),
    ruleMatches: registry.counter(
      "receiptd_rule_matches_total",
      "Receipt rules matched by messages whose processing ended, once per message, by rule name.",
      ["rule"],
    ),
    authResults: registry.counter(
      "receiptd_auth_results_total",
      "Authentication verdicts of received messages, by check (spf, dkim, dmarc) and verdict.",
      ["check", "verdict"],
    ),
    authSeconds: registry.histogram(
      "receiptd_auth_seconds",
      "Seconds the SPF, DKIM and DMARC checks of one message took, DNS included.",
      AUTH_SECONDS_BUCKETS,
    ),
    authDnsTimeouts: registry.counter(
      "receiptd_auth_dns_timeouts_total",
      "Authentications whose DNS budget (authentication.dnsTimeoutMs) ran out.",
    ),
    configReloads: registry.counter("receiptd_config_reloads_total", "Configuration reloads, by result.", ["result"]),
    apiRequests: registry.counter("receiptd_api_requests_total", "SES API calls, by operation and outcome (ok or the SES error code).", [
      "operation",
      "outcome",
    ]),
    apiSeconds: registry.histogram("receiptd_api_request_seconds", "Seconds an SES API call took, body read to response, by operation.", ACTION_SECONDS_BUCKETS, [
      "operation",
    ]),
  };
  // Both results exist from the start, so that an alert on increase(...{result="failure"}) sees the first failure.
  metrics.configReloads.inc({ result: "success" }, 0);
  metrics.configReloads.inc({ result: "failure" }, 0);
  for (const type of ["Lambda", "SNS"]) metrics.actionBackgroundFailures.inc({ type }, 0);
  for (const outcome of ["done", "stopped", "dead"] as const) metrics.messagesProcessed.inc({ outcome }, 0);
  for (const reason of DEAD_LETTER_CAUSES) metrics.messagesDeadLettered.inc({ reason }, 0);
  return metrics;
}
