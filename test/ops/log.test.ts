import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../src/ops/log.js";
import { Capture } from "./capture.js";

const clock = () => new Date("2026-03-01T10:00:00.000Z");

describe("JSON logs", () => {
  it("writes one object per line: time, level, event first, then the fields", () => {
    const out = new Capture();
    const log = createLogger({ stream: out, format: "json", clock });
    log.info("smtp.accepted", { size: 1234, recipients: ["a@example.com"] });
    log.warn("smtp.refused", { reason: "line one\nline two" });
    const lines = out.text.split("\n");
    expect(lines).toHaveLength(3);
    expect(lines[2]).toBe("");
    expect(Object.keys(JSON.parse(lines[0]!) as object).slice(0, 3)).toEqual(["time", "level", "event"]);
    expect(out.records()).toEqual([
      { time: "2026-03-01T10:00:00.000Z", level: "info", event: "smtp.accepted", size: 1234, recipients: ["a@example.com"] },
      { time: "2026-03-01T10:00:00.000Z", level: "warn", event: "smtp.refused", reason: "line one\nline two" },
    ]);
  });

  it("child loggers carry their fields (messageId) on every line, and may add more", () => {
    const out = new Capture();
    const log = createLogger({ stream: out, format: "json", clock });
    const message = log.child({ messageId: "0123456789abcdefghijklmnopqrstuv01234567" });
    message.info("rules.evaluated", { rules: 2 });
    message.child({ action: "S3" }).error("action.failed");
    log.info("unrelated");
    const [first, second, third] = out.records();
    expect(first).toMatchObject({ messageId: "0123456789abcdefghijklmnopqrstuv01234567", rules: 2 });
    expect(second).toMatchObject({ messageId: "0123456789abcdefghijklmnopqrstuv01234567", action: "S3", level: "error" });
    expect(third).not.toHaveProperty("messageId");
  });

  it("drops events below the level; info is the default", () => {
    const out = new Capture();
    const log = createLogger({ stream: out, format: "json", clock });
    log.debug("hidden");
    log.info("shown");
    const warnOnly = createLogger({ stream: out, format: "json", clock, level: "warn" });
    warnOnly.info("hidden");
    warnOnly.error("shown too");
    expect(out.records().map((record) => record.event)).toEqual(["shown", "shown too"]);
  });

  it("serialises errors: name, message, code and cause; the stack only at debug level", () => {
    const error = Object.assign(new Error("connect refused", { cause: new TypeError("socket") }), { code: "ECONNREFUSED" });
    const named = Object.assign(new Error("The bucket does not exist"), { name: "NoSuchBucket" });
    const info = new Capture();
    createLogger({ stream: info, format: "json", clock }).error("action.failed", { error, other: named });
    expect(info.records()[0]).toEqual({
      time: "2026-03-01T10:00:00.000Z",
      level: "error",
      event: "action.failed",
      error: { message: "connect refused", code: "ECONNREFUSED", cause: { name: "TypeError", message: "socket" } },
      other: { name: "NoSuchBucket", message: "The bucket does not exist" },
    });
    const debug = new Capture();
    createLogger({ stream: debug, format: "json", clock, level: "debug" }).error("action.failed", { error });
    expect((debug.records()[0]!.error as { stack: string }).stack).toContain("connect refused");
  });

  it("keeps the reserved keys and writes odd values as JSON data", () => {
    const out = new Capture();
    const circular: Record<string, unknown> = { name: "loop" };
    circular.self = circular;
    createLogger({ stream: out, format: "json", clock }).info("odd", {
      event: "not the event",
      level: "not the level",
      big: 10n,
      set: new Set(["a"]),
      map: new Map([["k", 1]]),
      circular,
      when: new Date("2026-01-02T03:04:05.000Z"),
      missing: undefined,
    });
    expect(out.records()[0]).toEqual({
      time: "2026-03-01T10:00:00.000Z",
      level: "info",
      event: "odd",
      _event: "not the event",
      _level: "not the level",
      big: "10",
      set: ["a"],
      map: { k: 1 },
      circular: { name: "loop", self: "[Circular]" },
      when: "2026-01-02T03:04:05.000Z",
    });
  });

  it("auto picks JSON for a pipe or file", () => {
    const out = new Capture(false);
    createLogger({ stream: out, clock }).info("x");
    expect(out.records()).toHaveLength(1);
  });
});

describe("pretty logs", () => {
  it("writes one readable line per event: time, level, event, key=value pairs", () => {
    const out = new Capture();
    const log = createLogger({ stream: out, format: "pretty", clock }).child({ messageId: "abc" });
    const error = Object.assign(new Error("nope"), { code: "E1" });
    log.warn("smtp.refused", { stage: "rcpt", reply: "550 5.7.1 Relaying denied", error });
    expect(out.text).toBe(
      "2026-03-01T10:00:00.000Z WARN  smtp.refused messageId=abc stage=rcpt" +
        ' reply="550 5.7.1 Relaying denied" error.message=nope error.code=E1\n',
    );
  });

  it("has no colours unless the stream is a terminal", () => {
    const file = new Capture(false);
    createLogger({ stream: file, format: "pretty", clock }).error("boom");
    expect(file.text).not.toContain("\x1b[");
    const previous = process.env.NO_COLOR;
    delete process.env.NO_COLOR;
    try {
      const tty = new Capture(true);
      createLogger({ stream: tty, clock }).error("boom", { a: 1 });
      expect(tty.text).toContain("\x1b[31mERROR");
      expect(tty.text.replace(/\x1b\[\d+m/g, "")).toBe("2026-03-01T10:00:00.000Z ERROR boom a=1\n");
    } finally {
      if (previous !== undefined) process.env.NO_COLOR = previous;
    }
  });

  it("puts a debug-level stack on indented lines after the event", () => {
    const out = new Capture();
    createLogger({ stream: out, format: "pretty", clock, level: "debug" }).error("failed", { error: new Error("bad") });
    const [line, next] = out.text.split("\n");
    expect(line).toBe("2026-03-01T10:00:00.000Z ERROR failed error.message=bad");
    expect(next).toBe("    Error: bad");
  });
});

describe("logging never throws", () => {
  it("ignores a closed or failing stream", async () => {
    const out = new Capture();
    const log = createLogger({ stream: out, format: "json", clock });
    out.end();
    expect(() => log.info("after end")).not.toThrow();
    const destroyed = new Capture();
    const other = createLogger({ stream: destroyed, format: "json", clock });
    destroyed.destroy();
    expect(() => other.error("after destroy")).not.toThrow();
    // A write error surfaces asynchronously; it must not become an uncaught exception.
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(out.text).toBe("");
  });

  it("stops writing to a stream whose writes fail (EPIPE) instead of crashing", async () => {
    let attempts = 0;
    const broken = new Writable({
      write(_chunk, _encoding, callback) {
        attempts += 1;
        callback(Object.assign(new Error("write EPIPE"), { code: "EPIPE" }));
      },
    });
    const log = createLogger({ stream: broken, format: "json", clock });
    log.info("first");
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(() => log.info("second")).not.toThrow();
    expect(attempts).toBe(1);
  });

  it("drops the event when the clock or a field throws", () => {
    const out = new Capture();
    const bad = { toJSON: () => { throw new Error("no"); } };
    expect(() => createLogger({ stream: out, format: "json", clock }).info("x", { bad })).not.toThrow();
    expect(() => createLogger({ stream: out, format: "json", clock: () => new Date(Number.NaN) }).info("y")).not.toThrow();
    expect(out.text).toBe("");
  });
});
