export type LogLevel = "debug" | "info" | "warn" | "error";

/** An error's message (or the thrown value as text), for a log field or an event. */
export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(event: string, fields?: LogFields): void;
  info(event: string, fields?: LogFields): void;
  warn(event: string, fields?: LogFields): void;
  error(event: string, fields?: LogFields): void;
  /** A logger whose every line carries `fields` too (e.g. `messageId` for all lines about one message). */
  child(fields: LogFields): Logger;
}

export interface LoggerOptions {
  /** Default: process.stderr. */
  stream?: NodeJS.WritableStream;
  /** `auto` (the default): pretty when the stream is a terminal, else JSON. */
  format?: "json" | "pretty" | "auto";
  /** Default: info. */
  level?: LogLevel;
  clock?: () => Date;
}

const SEVERITY: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** The keys every line starts with; a field of the same name must not overwrite them. */
const RESERVED = new Set(["time", "level", "event"]);

/** Deeper structures are cut: a log line is for reading, not for dumping object graphs. */
const MAX_DEPTH = 8;

interface Sink {
  stream: NodeJS.WritableStream;
  pretty: boolean;
  colour: boolean;
  threshold: number;
  stacks: boolean;
  clock: () => Date;
  health: { broken: boolean };
}

function serializeError(error: Error, sink: Sink, ancestors: object[], depth: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  // "Error" says nothing, but SDK error names do (NoSuchBucket, TimeoutError).
  if (error.name !== "Error") out.name = error.name;
  out.message = error.message;
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string" || typeof code === "number") out.code = code;
  if (error.cause !== undefined) out.cause = normalize(error.cause, sink, ancestors, depth + 1);
  if (sink.stacks && error.stack !== undefined) out.stack = error.stack;
  return out;
}

/** Turns a field value into plain JSON data: errors, sets, maps, bigints and cycles would otherwise be lost or throw. */
function normalize(value: unknown, sink: Sink, ancestors: object[], depth: number): unknown {
  switch (typeof value) {
    case "bigint":
      return value.toString();
    case "symbol":
    case "function":
      return String(value);
    case "object":
      break;
    default:
      return value;
  }
  if (value === null) return null;
  if (ancestors.includes(value)) return "[Circular]";
  if (depth >= MAX_DEPTH) return "[Object]";
  const inner = [...ancestors, value];
  if (value instanceof Error) return serializeError(value, sink, inner, depth);
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? "Invalid Date" : value.toISOString();
  if (value instanceof Set) return [...value].map((item) => normalize(item, sink, inner, depth + 1));
  if (value instanceof Map) {
    return Object.fromEntries([...value].map(([key, item]) => [String(key), normalize(item, sink, inner, depth + 1)]));
  }
  if (Array.isArray(value)) return value.map((item) => normalize(item, sink, inner, depth + 1));
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === "function") return normalize(toJSON.call(value), sink, inner, depth + 1);
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) out[key] = normalize(item, sink, inner, depth + 1);
  return out;
}

function buildRecord(sink: Sink, level: LogLevel, event: string, bindings: LogFields, fields: LogFields | undefined) {
  const record: Record<string, unknown> = { time: sink.clock().toISOString(), level, event };
  for (const source of fields === undefined ? [bindings] : [bindings, fields]) {
    for (const [key, value] of Object.entries(source)) {
      if (value === undefined) continue;
      record[RESERVED.has(key) ? `_${key}` : key] = normalize(value, sink, [], 0);
    }
  }
  return record;
}

const ANSI = { reset: "\x1b[0m", bold: "\x1b[1m", dim: "\x1b[2m" };
const LEVEL_COLOUR: Record<LogLevel, string> = { debug: "\x1b[90m", info: "\x1b[36m", warn: "\x1b[33m", error: "\x1b[31m" };

/** Bare when unambiguous in a `key=value` list; JSON-quoted otherwise, which also keeps newlines off the line. */
function prettyValue(value: unknown): string {
  if (typeof value === "string") return value !== "" && /^[^\s"=\\\p{Cc}]+$/u.test(value) ? value : JSON.stringify(value);
  return JSON.stringify(value) ?? String(value);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Nested objects become dotted keys (`error.message=... error.code=...`), easier to scan than inline JSON. */
function flatten(record: Record<string, unknown>, prefix: string, pairs: [string, unknown][], stacks: string[]): void {
  for (const [key, value] of Object.entries(record)) {
    const name = prefix + key;
    if (key === "stack" && typeof value === "string") stacks.push(value);
    else if (isPlainObject(value) && Object.keys(value).length > 0) flatten(value, `${name}.`, pairs, stacks);
    else pairs.push([name, value]);
  }
}

function prettyLine(sink: Sink, record: Record<string, unknown>): string {
  const { time, level, event, ...fields } = record as { time: string; level: LogLevel; event: string };
  const paint = (code: string, text: string): string => (sink.colour ? `${code}${text}${ANSI.reset}` : text);
  const pairs: [string, unknown][] = [];
  const stacks: string[] = [];
  flatten(fields, "", pairs, stacks);
  const parts = [paint(ANSI.dim, time), paint(LEVEL_COLOUR[level], level.toUpperCase().padEnd(5)), paint(ANSI.bold, event)];
  for (const [key, value] of pairs) parts.push(`${paint(ANSI.dim, `${key}=`)}${prettyValue(value)}`);
  // Stacks are only logged at debug level, for a person at a terminal: indented lines read better than an escaped string.
  const trailer = stacks.map((stack) => `\n${stack.replace(/^/gm, "    ")}`).join("");
  return parts.join(" ") + trailer;
}

/**
 * A failing stream emits `error`, which crashes the process when nobody listens: logging must
 * never take the daemon down, so the first failure only turns logging to that stream off.
 */
const guarded = new WeakMap<NodeJS.WritableStream, { broken: boolean }>();

function guard(stream: NodeJS.WritableStream): { broken: boolean } {
  let state = guarded.get(stream);
  if (!state) {
    const created = { broken: false };
    stream.on("error", () => {
      created.broken = true;
    });
    guarded.set(stream, created);
    state = created;
  }
  return state;
}

function write(sink: Sink, level: LogLevel, event: string, bindings: LogFields, fields: LogFields | undefined): void {
  if (SEVERITY[level] < sink.threshold) return;
  const stream = sink.stream as NodeJS.WritableStream & { destroyed?: boolean; writableEnded?: boolean };
  if (sink.health.broken || stream.destroyed === true || stream.writableEnded === true) return;
  try {
    const record = buildRecord(sink, level, event, bindings, fields);
    const line = sink.pretty ? prettyLine(sink, record) : JSON.stringify(record);
    stream.write(`${line}\n`);
  } catch {
    // A clock or a field's toJSON that throws, or a stream that throws synchronously: drop the event.
  }
}

function makeLogger(sink: Sink, bindings: LogFields): Logger {
  return {
    debug: (event, fields) => write(sink, "debug", event, bindings, fields),
    info: (event, fields) => write(sink, "info", event, bindings, fields),
    warn: (event, fields) => write(sink, "warn", event, bindings, fields),
    error: (event, fields) => write(sink, "error", event, bindings, fields),
    child: (fields) => makeLogger(sink, { ...bindings, ...fields }),
  };
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const stream = options.stream ?? process.stderr;
  const tty = (stream as { isTTY?: boolean }).isTTY === true;
  const format = options.format ?? "auto";
  const pretty = format === "pretty" || (format === "auto" && tty);
  const level = options.level ?? "info";
  const sink: Sink = {
    stream,
    pretty,
    // https://no-color.org: any non-empty NO_COLOR turns colours off.
    colour: pretty && tty && !process.env.NO_COLOR,
    threshold: SEVERITY[level],
    stacks: level === "debug",
    clock: options.clock ?? (() => new Date()),
    health: guard(stream),
  };
  return makeLogger(sink, {});
}

/** The logger `receiptd serve` and its acceptor processes use: RECEIPTD_LOG_FORMAT and RECEIPTD_LOG_LEVEL. */
export function loggerFromEnvironment(env: NodeJS.ProcessEnv = process.env): Logger {
  const format = env.RECEIPTD_LOG_FORMAT;
  const level = env.RECEIPTD_LOG_LEVEL;
  return createLogger({
    format: format === "json" || format === "pretty" ? format : "auto",
    level: level === "debug" || level === "warn" || level === "error" ? level : "info",
  });
}
