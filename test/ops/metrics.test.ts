import { describe, expect, it } from "vitest";
import { createMetrics, createRegistry } from "../../src/ops/metrics.js";

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"/g;

/** Parses exposition text back, failing on any line that is neither a comment of the format nor a sample. */
function parse(text: string): { samples: Sample[]; help: Map<string, string>; type: Map<string, string> } {
  expect(text.endsWith("\n")).toBe(true);
  const samples: Sample[] = [];
  const help = new Map<string, string>();
  const type = new Map<string, string>();
  for (const line of text.slice(0, -1).split("\n")) {
    const comment = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (comment) {
      (comment[1] === "HELP" ? help : type).set(comment[2]!, comment[3]!);
      continue;
    }
    const match = SAMPLE.exec(line);
    expect(match, `not a sample line: ${line}`).not.toBeNull();
    const labels: Record<string, string> = {};
    for (const [, name, value] of (match![2] ?? "").matchAll(LABEL)) {
      labels[name!] = value!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    }
    const raw = match![3]!;
    samples.push({ name: match![1]!, labels, value: raw === "+Inf" ? Infinity : Number(raw) });
  }
  return { samples, help, type };
}

const find = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples.find((sample) => sample.name === name && JSON.stringify(sample.labels) === JSON.stringify(labels))?.value;

describe("Prometheus text format", () => {
  it("renders counters and gauges with HELP and TYPE, labels in declaration order", async () => {
    const registry = createRegistry();
    const requests = registry.counter("app_requests_total", "Requests.\nSecond line with \\ backslash.", ["method", "code"]);
    const temperature = registry.gauge("app_temperature", "Temperature.");
    requests.inc({ code: "200", method: "GET" });
    requests.inc({ method: "GET", code: "200" }, 2);
    requests.inc({ method: "POST", code: "500" });
    temperature.set(21.5);
    temperature.dec(0.5);
    const text = await registry.render();
    expect(text).toBe(
      [
        "# HELP app_requests_total Requests.\\nSecond line with \\\\ backslash.",
        "# TYPE app_requests_total counter",
        'app_requests_total{method="GET",code="200"} 3',
        'app_requests_total{method="POST",code="500"} 1',
        "# HELP app_temperature Temperature.",
        "# TYPE app_temperature gauge",
        "app_temperature 21",
        "",
      ].join("\n"),
    );
    expect(requests.get({ method: "GET", code: "200" })).toBe(3);
    expect(requests.get({ method: "PUT", code: "200" })).toBe(0);
  });

  it("escapes backslash, double quote and newline in label values", async () => {
    const registry = createRegistry();
    const counter = registry.counter("odd_total", "Odd labels.", ["value"]);
    const odd = 'a\\b "quoted"\nnext';
    counter.inc({ value: odd });
    const text = await registry.render();
    expect(text).toContain('odd_total{value="a\\\\b \\"quoted\\"\\nnext"} 1');
    expect(parse(text).samples[0]!.labels.value).toBe(odd);
  });

  it("renders histograms with cumulative buckets, +Inf, _sum and _count", async () => {
    const registry = createRegistry();
    const latency = registry.histogram("op_seconds", "Latency.", [0.1, 0.5, 1], ["op"]);
    for (const value of [0.05, 0.1, 0.3, 0.7, 3]) latency.observe({ op: "read" }, value);
    latency.observe({ op: "write" }, 0.2);
    const { samples, type } = parse(await registry.render());
    expect(type.get("op_seconds")).toBe("histogram");
    const buckets = samples.filter((sample) => sample.name === "op_seconds_bucket" && sample.labels.op === "read");
    expect(buckets.map((sample) => [sample.labels.le, sample.value])).toEqual([
      ["0.1", 2],
      ["0.5", 3],
      ["1", 4],
      ["+Inf", 5],
    ]);
    for (let i = 1; i < buckets.length; i++) expect(buckets[i]!.value).toBeGreaterThanOrEqual(buckets[i - 1]!.value);
    expect(find(samples, "op_seconds_count", { op: "read" })).toBe(5);
    expect(find(samples, "op_seconds_sum", { op: "read" })).toBeCloseTo(4.15);
    expect(find(samples, "op_seconds_bucket", { op: "write", le: "0.5" })).toBe(1);
    expect(latency.get({ op: "read" })).toEqual({ counts: [2, 3, 4], sum: expect.closeTo(4.15) as number, count: 5 });
  });

  it("shows unlabelled metrics at zero from the start", async () => {
    const registry = createRegistry();
    registry.counter("started_total", "Started.");
    registry.histogram("wait_seconds", "Wait.", [1]);
    const { samples } = parse(await registry.render());
    expect(find(samples, "started_total")).toBe(0);
    expect(find(samples, "wait_seconds_bucket", { le: "+Inf" })).toBe(0);
    expect(find(samples, "wait_seconds_count")).toBe(0);
  });

  it("refuses bad names, duplicate metrics, bad buckets and decreasing counters", () => {
    const registry = createRegistry();
    expect(() => registry.counter("bad-name", "x")).toThrow(/metric name/);
    expect(() => registry.counter("ok_total", "x", ["bad-label"])).toThrow(/label name/);
    expect(() => registry.histogram("h", "x", [1], ["le"])).toThrow(/label name/);
    expect(() => registry.histogram("h2", "x", [1, 1])).toThrow(/increasing/);
    const counter = registry.counter("once_total", "x");
    expect(() => registry.gauge("once_total", "x")).toThrow(/twice/);
    expect(() => counter.inc(-1)).toThrow(/decrease/);
  });

  it("runs scrape callbacks before rendering; a failing one keeps the last value", async () => {
    const failures: string[] = [];
    const registry = createRegistry({ onCollectError: (metric) => failures.push(metric) });
    const depth = registry.gauge("queue_depth", "Depth.");
    let next: number | Error = 7;
    depth.onScrape(async (gauge) => {
      await Promise.resolve();
      if (next instanceof Error) throw next;
      gauge.set(next);
    });
    expect(find(parse(await registry.render()).samples, "queue_depth")).toBe(7);
    next = new Error("spool gone");
    expect(find(parse(await registry.render()).samples, "queue_depth")).toBe(7);
    expect(failures).toEqual(["queue_depth"]);
  });
});

describe("the daemon's metrics", () => {
  it("types labels: required and complete where declared, absent where not (checked by tsc)", () => {
    const metrics = createMetrics();
    const misuse = (): void => {
      // @ts-expect-error reason is missing
      metrics.smtpRefused.inc({ stage: "rcpt" });
      // @ts-expect-error labels are required
      metrics.actions.inc();
      // @ts-expect-error an unlabelled counter takes no labels
      metrics.smtpConnections.inc({ stage: "rcpt" });
      // @ts-expect-error a dead letter's reason is a closed set, never an error text
      metrics.messagesDeadLettered.inc({ reason: "permanent failure: NoSuchBucket" });
      // @ts-expect-error a gauge needs its value
      metrics.smtpConnectionsOpen.set();
    };
    expect(typeof misuse).toBe("function");
  });

  it("has the documented names, types and labels", async () => {
    const metrics = createMetrics();
    metrics.smtpConnections.inc();
    metrics.smtpConnectionsOpen.inc();
    metrics.smtpMessagesAccepted.inc();
    metrics.smtpRefused.inc({ stage: "rcpt", reason: "relaying_denied" });
    metrics.smtpAcceptSeconds.observe(0.004);
    metrics.spoolDepth.onScrape((gauge) => gauge.set(3));
    metrics.actions.inc({ type: "S3", outcome: "done" });
    metrics.actionSeconds.observe({ type: "S3" }, 0.2);
    metrics.messagesDeadLettered.inc({ reason: "permanent_failure" });
    metrics.messagesProcessed.inc({ outcome: "stopped" });
    metrics.ruleMatches.inc({ rule: "archive" });
    metrics.authResults.inc({ check: "spf", verdict: "PASS" });
    metrics.authSeconds.observe(0.02);
    metrics.authDnsTimeouts.inc();
    metrics.configReloads.inc({ result: "success" });
    const custom = metrics.counter("receiptd_custom_total", "Added by the daemon.");
    custom.inc();
    const { samples, type, help } = parse(await metrics.render());
    expect(Object.fromEntries(type)).toEqual({
      receiptd_smtp_connections_total: "counter",
      receiptd_smtp_connections_open: "gauge",
      receiptd_smtp_messages_accepted_total: "counter",
      receiptd_smtp_refused_total: "counter",
      receiptd_smtp_accept_seconds: "histogram",
      receiptd_spool_depth: "gauge",
      receiptd_actions_total: "counter",
      receiptd_action_seconds: "histogram",
      receiptd_action_background_failures_total: "counter",
      receiptd_messages_dead_lettered_total: "counter",
      receiptd_messages_processed_total: "counter",
      receiptd_messages_requeued_total: "counter",
      receiptd_scans_total: "counter",
      receiptd_scan_seconds: "histogram",
      receiptd_rule_matches_total: "counter",
      receiptd_auth_results_total: "counter",
      receiptd_auth_seconds: "histogram",
      receiptd_auth_dns_timeouts_total: "counter",
      receiptd_config_reloads_total: "counter",
      receiptd_api_requests_total: "counter",
      receiptd_api_request_seconds: "histogram",
      receiptd_custom_total: "counter",
    });
    for (const name of type.keys()) expect(help.get(name)).toBeTruthy();
    expect(find(samples, "receiptd_smtp_connections_total")).toBe(1);
    expect(find(samples, "receiptd_smtp_connections_open")).toBe(1);
    expect(find(samples, "receiptd_smtp_refused_total", { stage: "rcpt", reason: "relaying_denied" })).toBe(1);
    expect(find(samples, "receiptd_smtp_accept_seconds_bucket", { le: "0.005" })).toBe(1);
    expect(find(samples, "receiptd_smtp_accept_seconds_bucket", { le: "0.0025" })).toBe(0);
    expect(find(samples, "receiptd_spool_depth")).toBe(3);
    expect(find(samples, "receiptd_actions_total", { type: "S3", outcome: "done" })).toBe(1);
    expect(find(samples, "receiptd_action_seconds_count", { type: "S3" })).toBe(1);
    expect(find(samples, "receiptd_messages_dead_lettered_total", { reason: "permanent_failure" })).toBe(1);
    expect(find(samples, "receiptd_messages_processed_total", { outcome: "stopped" })).toBe(1);
    expect(find(samples, "receiptd_rule_matches_total", { rule: "archive" })).toBe(1);
    expect(find(samples, "receiptd_auth_results_total", { check: "spf", verdict: "PASS" })).toBe(1);
    expect(find(samples, "receiptd_auth_seconds_bucket", { le: "0.025" })).toBe(1);
    expect(find(samples, "receiptd_auth_dns_timeouts_total")).toBe(1);
    // Every outcome and dead-letter reason exists from the start, so that increase() sees the first.
    expect(find(samples, "receiptd_messages_processed_total", { outcome: "dead" })).toBe(0);
    expect(find(samples, "receiptd_messages_dead_lettered_total", { reason: "retry_window_ended" })).toBe(0);
    expect(find(samples, "receiptd_config_reloads_total", { result: "success" })).toBe(1);
    // Present before the first failure, so that increase() sees it.
    expect(find(samples, "receiptd_config_reloads_total", { result: "failure" })).toBe(0);
    expect(find(samples, "receiptd_action_background_failures_total", { type: "Lambda" })).toBe(0);
    expect(find(samples, "receiptd_action_background_failures_total", { type: "SNS" })).toBe(0);
    expect(find(samples, "receiptd_custom_total")).toBe(1);
  });
});
