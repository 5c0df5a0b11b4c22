// The processor over a real spool: order, journaling and resume, retries with backoff, the
// retry window, dead letters and their DSN, drain.
import { simpleParser } from "mailparser";
import { readFile, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { SendDsnRequest } from "../../src/actions/backend.js";
import { smtpDsnSender } from "../../src/actions/transports/dsn.js";
import type { ActionOutcome } from "../../src/rules/executor.js";
import type { RuleSet } from "../../src/rules/model.js";
import { Processor } from "../../src/spool/processor.js";
import type { ProcessorOptions } from "../../src/spool/processor.js";
import type { MessageState } from "../../src/spool/format.js";
import { Spool } from "../../src/spool/spool.js";
import { SpoolWriter } from "../../src/spool/spool-writer.js";
import { addHeader, lambda, rule, ruleSet, s3, sns } from "../helpers/rules.js";
import { startSmtpServer } from "../helpers/smtp-server.js";
import {
  Events,
  FUNCTION,
  ManualTimers,
  RECEIVED_AT,
  TOPIC,
  chunks,
  doneFiles,
  doneTraces,
  listDir,
  messageBytes,
  newId,
  scratchDir,
  scriptedExecutor,
  snapshotOf,
  stateFor,
} from "./helpers.js";
import type { Script } from "./helpers.js";

let dir: string;
let remove: () => Promise<void>;
let spool: Spool;
beforeEach(async () => {
  ({ dir, remove } = await scratchDir());
  spool = await Spool.open({ dir, fsync: false });
});
afterEach(async () => {
  await remove();
});

const HOUR = 60 * 60 * 1000;

async function spoolMessage(rules?: RuleSet, extra: Partial<MessageState> = {}): Promise<string> {
  const snapshot = await spool.writer.saveSnapshot(snapshotOf(rules));
  const id = newId();
  await spool.writer.store(stateFor(id, snapshot, extra), chunks(messageBytes(id)));
  return id;
}

interface Harness {
  processor: Processor;
  calls: string[];
  events: Events;
  timers: ManualTimers;
  dsns: SendDsnRequest[];
  clock: { now: Date };
}

function harness(script?: Script, options: Partial<ProcessorOptions> = {}): Harness {
  const { executor, calls } = scriptedExecutor(script);
  const events = new Events();
  const timers = new ManualTimers();
  const dsns: SendDsnRequest[] = [];
  const clock = { now: new Date(RECEIVED_AT.getTime() + 1000) };
  const processor = new Processor({
    spool: spool.queue,
    executor,
    hostname: "mx.example.com",
    sendFailureDsn: async (request) => {
      dsns.push(request);
    },
    clock: () => clock.now,
    random: () => 0.5,
    setTimer: timers.set,
    onEvent: events.listener,
    ...options,
  });
  return { processor, calls, events, timers, dsns, clock };
}

const transient = (error = "throttled"): ActionOutcome => ({ status: "failed", failure: "transient", error });
const permanent = (error = "NoSuchBucket"): ActionOutcome => ({ status: "failed", failure: "permanent", error });

/** Lets every held action go, as they come, until `done` settles. */
async function releaseUntil(done: Promise<unknown>, release: (() => void)[]): Promise<void> {
  let finished = false;
  void done.then(() => (finished = true));
  while (!finished) {
    release.splice(0).forEach((go) => go());
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

describe("processing", () => {
  it("runs the actions in order, journals each, and moves the message to done/", async () => {
    const id = await spoolMessage();
    const h = harness((_call, key) => ({ status: "done", detail: { key } }));
    const completed = h.events.next("message-completed", id);
    h.processor.enqueue(id);
    await completed;
    expect(h.calls).toEqual(["first/0", "first/1", "second/0", "second/1"]);
    expect(await listDir(join(dir, "queue"))).toEqual([]);
    const journalPath = (await doneFiles(dir)).find((path) => path.endsWith(`${id}.journal`))!;
    const journal = (await readFile(join(dir, "done", journalPath), "utf8")).trim().split("\n").map((l) => JSON.parse(l));
    expect(journal.map((o) => o.detail.key)).toEqual(h.calls);
    const { trace } = (await doneTraces(dir)).get(id) as { trace: { end: string } };
    expect(trace.end).toBe("completed");
    expect(h.events.of("action-done").map((e) => `${e.action}@${e.rule}`)).toEqual(["S3@first", "SNS@first", "Lambda@second", "S3@second"]);
    expect(spool.queue.depth()).toBe(0);
  });

  it("resumes at the first action not recorded done", async () => {
    const id = await spoolMessage();
    await spool.queue.recordOutcome(id, { status: "done" });
    await spool.queue.recordOutcome(id, { status: "done" });
    const h = harness();
    const completed = h.events.next("message-completed", id);
    await h.processor.start();
    await completed;
    expect(h.calls).toEqual(["second/0", "second/1"]);
  });

  it("replays a recorded Lambda disposition instead of invoking the function again", async () => {
    const rules = ruleSet(
      rule("first", ["example.com"], [lambda(FUNCTION, "RequestResponse"), s3("bucket-a")]),
      rule("second", ["example.com"], [sns(TOPIC)]),
    );
    const id = await spoolMessage(rules);
    await spool.queue.recordOutcome(id, { status: "done", disposition: "stop_rule" });
    const h = harness();
    const completed = h.events.next("message-completed", id);
    h.processor.enqueue(id);
    await completed;
    // STOP_RULE skipped the S3 action of the first rule; the second rule ran.
    expect(h.calls).toEqual(["second/0"]);
  });

  it("reports a stopped evaluation as stopped", async () => {
    const id = await spoolMessage(ruleSet(rule("only", ["example.com"], [addHeader("X-A", "1"), { type: "Stop", params: { Scope: "RuleSet" } }])));
    const h = harness();
    const stopped = h.events.next("message-stopped", id);
    h.processor.enqueue(id);
    await stopped;
    expect(h.calls).toEqual(["only/0", "only/1"]);
    expect(((await doneTraces(dir)).get(id)?.trace as { end: string }).end).toBe("stopped");
  });

  it("runs at most `concurrency` messages at once, and each message's actions one at a time", async () => {
    const ids = await Promise.all(Array.from({ length: 6 }, () => spoolMessage()));
    let running = 0;
    let most = 0;
    const perMessage = new Map<string, number>();
    const h = harness(
      async (call) => {
        running++;
        most = Math.max(most, running);
        perMessage.set(call.messageId, (perMessage.get(call.messageId) ?? 0) + 1);
        expect(perMessage.get(call.messageId)).toBe(1);
        await new Promise((resolve) => setTimeout(resolve, 5));
        perMessage.set(call.messageId, (perMessage.get(call.messageId) ?? 0) - 1);
        running--;
        return { status: "done" };
      },
      { concurrency: 2 },
    );
    const all = Promise.all(ids.map((id) => h.events.next("message-completed", id)));
    for (const id of ids) h.processor.enqueue(id);
    h.processor.enqueue(ids[0]!);
    await all;
    expect(most).toBe(2);
    expect(h.calls.length).toBe(6 * 4);
  });

  it("runs fewer messages while the SMTP side is busy, and the rest once it is not", async () => {
    const ids = await Promise.all(Array.from({ length: 5 }, () => spoolMessage()));
    let busy = true;
    let running = 0;
    let most = 0;
    const release: (() => void)[] = [];
    const h = harness(
      async () => {
        running++;
        most = Math.max(most, running);
        await new Promise<void>((resolve) => release.push(resolve));
        running--;
        return { status: "done" };
      },
      { concurrency: 4, whileBusy: { concurrency: 1, isBusy: () => busy } },
    );
    const all = Promise.all(ids.map((id) => h.events.next("message-completed", id)));
    for (const id of ids) h.processor.enqueue(id);
    await vi.waitFor(() => expect(release).toHaveLength(1));
    expect(running).toBe(1);
    // While busy, nothing more starts when the recheck fires.
    expect(h.timers.active()).toEqual([20]);
    h.timers.fireAll();
    expect(running).toBe(1);
    busy = false;
    h.timers.fireAll();
    await vi.waitFor(() => expect(running).toBe(4));
    await releaseUntil(all, release);
    expect(most).toBe(4);
  });

  it("lets no message wait longer than maxDeferMs for a busy SMTP side", async () => {
    const ids = await Promise.all(Array.from({ length: 3 }, () => spoolMessage()));
    let running = 0;
    const release: (() => void)[] = [];
    const h = harness(
      async () => {
        running++;
        await new Promise<void>((resolve) => release.push(resolve));
        running--;
        return { status: "done" };
      },
      { concurrency: 3, whileBusy: { concurrency: 1, isBusy: () => true, maxDeferMs: 1000 } },
    );
    const all = Promise.all(ids.map((id) => h.events.next("message-completed", id)));
    for (const id of ids) h.processor.enqueue(id);
    await vi.waitFor(() => expect(release).toHaveLength(1));
    h.timers.fireAll();
    expect(running).toBe(1);
    h.clock.now = new Date(h.clock.now.getTime() + 1001);
    h.timers.fireAll();
    await vi.waitFor(() => expect(running).toBe(3));
    await releaseUntil(all, release);
  });

  it("takes an executor that throws as a transient failure", async () => {
    const id = await spoolMessage();
    const h = harness((_call, key) => {
      if (key === "first/0") throw new Error("socket hang up");
      return { status: "done" };
    });
    const scheduled = h.events.next("retry-scheduled", id);
    h.processor.enqueue(id);
    expect((await scheduled).error).toBe("socket hang up");
  });
});

describe("transient failures", () => {
  it("are retried with backoff, later actions waiting, until the action succeeds", async () => {
    const id = await spoolMessage();
    let snsFailures = 2;
    const h = harness((_call, key) => (key === "first/1" && snsFailures-- > 0 ? transient() : { status: "done" }), {
      backoff: { initialMs: 1000, maxMs: 60_000 },
    });
    const first = h.events.next("retry-scheduled", id);
    h.processor.enqueue(id);
    // random() is 0.5: three quarters of the doubled delay.
    expect(await first).toMatchObject({ attempt: 1, delayMs: 750 });
    expect(h.timers.active()).toEqual([750]);
    const second = h.events.next("retry-scheduled", id);
    h.timers.fireAll();
    expect(await second).toMatchObject({ attempt: 2, delayMs: 1500 });
    const completed = h.events.next("message-completed", id);
    h.timers.fireAll();
    await completed;
    expect(h.calls).toEqual(["first/0", "first/1", "first/1", "first/1", "second/0", "second/1"]);
    expect(h.dsns).toEqual([]);
  });

  it("dead-letter the message when the retry window ends, with a DSN to the sender", async () => {
    const id = await spoolMessage();
    const h = harness((_call, key) => (key === "second/0" ? transient("503 Service Unavailable") : { status: "done" }), {
      retryWindowMs: 4 * HOUR,
      backoff: { initialMs: 1000, maxMs: 5 * 60_000 },
    });
    const scheduled = h.events.next("retry-scheduled", id);
    h.processor.enqueue(id);
    await scheduled;
    // Just before the window's end the next retry is cut to land on it.
    h.clock.now = new Date(RECEIVED_AT.getTime() + 4 * HOUR - 10);
    const last = h.events.next("retry-scheduled", id);
    h.timers.fireAll();
    expect((await last).delayMs).toBe(10);
    h.clock.now = new Date(RECEIVED_AT.getTime() + 4 * HOUR);
    const dead = h.events.next("message-dead-lettered", id);
    const sent = h.events.next("dsn-sent", id);
    h.timers.fireAll();
    expect((await dead).reason).toMatch(/retry window .* ended: 503 Service Unavailable/);
    expect((await dead).cause).toBe("retry_window_ended");
    await sent;
    expect(h.calls).toEqual(["first/0", "first/1", "second/0", "second/0", "second/0"]);
    expect(await listDir(join(dir, "dead"))).toEqual([`${id}.journal`, `${id}.msg`, `${id}.trace.json`].sort());
    expect(h.dsns.length).toBe(1);
    expect(h.timers.active()).toEqual([]);
  });
});

describe("permanent failures", () => {
  it("dead-letter the message and send exactly one failure DSN to the envelope sender", async () => {
    const id = await spoolMessage(undefined, { envelope: { mailFrom: "carol@example.net", recipients: ["info@example.com", "sales@example.com"] } });
    const h = harness((_call, key) => (key === "first/1" ? permanent("Topic does not exist") : { status: "done" }));
    const sent = h.events.next("dsn-sent", id);
    h.processor.enqueue(id);
    await sent;
    expect(h.calls).toEqual(["first/0", "first/1"]);
    const record = JSON.parse(await readFile(join(dir, "dead", `${id}.trace.json`), "utf8"));
    expect(record.reason).toBe("permanent failure: Topic does not exist");
    expect(record.trace.end).toBe("failed");
    expect(h.dsns.length).toBe(1);
    const dsn = h.dsns[0]!;
    expect(dsn.to).toBe("carol@example.net");
    const raw = dsn.raw.toString("latin1");
    expect(raw).toContain("Reporting-MTA: dns; mx.example.com");
    expect(raw).toContain("Final-Recipient: rfc822; info@example.com");
    expect(raw).toContain("Final-Recipient: rfc822; sales@example.com");
    expect(raw.replace(/\r\n /g, " ")).toContain(
      "Diagnostic-Code: smtp; 550 5.3.0 This message could not be delivered due to a recipient error.",
    );
    expect(raw).toContain(`Received: from mail.example.net (mail.example.net [192.0.2.10]) by mx.example.com with SMTP id ${id}`);
    const parsed = await simpleParser(dsn.raw);
    expect(parsed.from?.text).toBe("MAILER-DAEMON@mx.example.com");
    expect(parsed.subject).toBe("Delivery Status Notification (Failure)");
    expect(parsed.inReplyTo).toBe("<m1@example.net>");
    expect(h.timers.active()).toEqual([]);
  });

  it("send no DSN to the null sender", async () => {
    const id = await spoolMessage(undefined, { envelope: { mailFrom: "", recipients: ["info@example.com"] } });
    const h = harness(() => permanent());
    const dead = h.events.next("message-dead-lettered", id);
    h.processor.enqueue(id);
    expect(await dead).toMatchObject({ dsn: "null sender", cause: "permanent_failure", mailFrom: "", recipients: 1, outcome: "dead" });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(h.dsns).toEqual([]);
    expect(await listDir(join(dir, "dead"))).toContain(`${id}.trace.json`);
  });

  it("use the configured failure reply and include the headers added so far", async () => {
    const rules = ruleSet(rule("only", ["example.com"], [addHeader("X-Stage", "one"), s3("bucket-a")]));
    const id = await spoolMessage(rules);
    const h = harness((call) => (call.type === "S3" ? permanent() : { status: "done" }), {
      failureReply: { smtpReplyCode: "554", statusCode: "5.0.0", message: "Undeliverable." },
    });
    const sent = h.events.next("dsn-sent", id);
    h.processor.enqueue(id);
    await sent;
    const raw = h.dsns[0]!.raw.toString("latin1");
    expect(raw).toContain("Diagnostic-Code: smtp; 554 5.0.0 Undeliverable.");
    expect(raw).toContain("X-Stage: one\r\nReturn-Path: <carol@example.net>");
  });

  it("give a failing DSN a few attempts with backoff, then up", async () => {
    const id = await spoolMessage();
    let tries = 0;
    const h = harness(() => permanent(), {
      dsnAttempts: 3,
      sendFailureDsn: async () => {
        tries++;
        throw new Error("relay refused");
      },
    });
    const firstFailure = h.events.next("dsn-failed", id);
    h.processor.enqueue(id);
    expect(await firstFailure).toMatchObject({ attempt: 1, final: false });
    const second = h.events.next("dsn-failed", id);
    h.timers.fireAll();
    expect(await second).toMatchObject({ attempt: 2, final: false });
    const third = h.events.next("dsn-failed", id);
    h.timers.fireAll();
    expect(await third).toMatchObject({ attempt: 3, final: true, error: "relay refused" });
    expect(tries).toBe(3);
    expect(h.timers.active()).toEqual([]);
  });

  it("give up a failure DSN the sender's side refuses with a 5xx after that one attempt", async () => {
    const refusals: string[] = [];
    const relay = await startSmtpServer({
      rcptReply: (address) => {
        refusals.push(address);
        return { code: 550, text: "5.1.1 No such user" };
      },
    });
    try {
      const id = await spoolMessage();
      const h = harness(() => permanent(), { sendFailureDsn: smtpDsnSender(`smtp://127.0.0.1:${relay.port}`) });
      const failed = h.events.next("dsn-failed", id);
      h.processor.enqueue(id);
      const event = await failed;
      expect(event).toMatchObject({ attempt: 1, final: true, failure: "permanent", to: "carol@example.net" });
      expect(event.error).toContain("550 5.1.1 No such user");
      expect(refusals).toEqual(["carol@example.net"]);
      expect(h.timers.active()).toEqual([]);
      expect(await listDir(join(dir, "dead"))).toContain(`${id}.trace.json`);
      expect(h.events.of("dsn-failed")).toHaveLength(1);
    } finally {
      await relay.close();
    }
  });

  it("include messages that cannot be parsed: dead-lettered, not retried forever", async () => {
    const id = newId();
    const snapshot = await spool.writer.saveSnapshot(snapshotOf());
    await spool.writer.store(stateFor(id, snapshot), chunks(Buffer.from("\x00\x01 binary garbage, no header\r\n")));
    const h = harness();
    const dead = h.events.next("message-dead-lettered", id);
    h.processor.enqueue(id);
    expect(await dead).toMatchObject({ dsn: "message unreadable" });
    expect(await dead).toMatchObject({ cause: "unprocessable", reason: expect.stringMatching(/^unprocessable: /) });
  });

  it("include messages the queue does not hold when they are to be moved: reported missing, not retried as disk trouble", async () => {
    // Written beside the queue, never adopted: readable, but not the queue's to move.
    const writer = SpoolWriter.forAcceptor({ dir, fsync: false });
    const snapshot = await writer.saveSnapshot(snapshotOf());
    const id = newId();
    await writer.store(stateFor(id, snapshot), chunks(messageBytes(id)));
    await writer.close();
    const h = harness(() => ({ status: "done" }));
    const missing = h.events.next("message-missing", id);
    h.processor.enqueue(id);
    expect((await missing).error).toMatch(/not pending/);
    expect(h.events.all.filter((e) => e.event === "spool-error" || e.event === "retry-scheduled")).toEqual([]);
    expect(h.timers.active()).toEqual([]);
  });

  it("include messages whose snapshot is gone: dead-lettered with that reason and a DSN, not retried", async () => {
    const id = await spoolMessage();
    const [snapshot] = await readdir(join(dir, "snapshots"));
    await rm(join(dir, "snapshots", snapshot!));
    const h = harness();
    const dead = h.events.next("message-dead-lettered", id);
    h.processor.enqueue(id);
    expect(await dead).toMatchObject({
      dsn: "sending",
      cause: "snapshot_missing",
      reason: expect.stringMatching(/^snapshot missing: snapshot [0-9a-f]{64} is missing/),
    });
    expect(h.events.all.filter((e) => e.event === "spool-error")).toEqual([]);
    expect(h.timers.active()).toEqual([]);
    while (h.dsns.length === 0) await new Promise((resolve) => setTimeout(resolve, 1));
    expect(h.dsns[0]!.to).toBe(stateFor(id, "0".repeat(64)).envelope.mailFrom);
  });
});

describe("a journal that cannot be written", () => {
  it("pauses processing until a write succeeds, without running actions again", async () => {
    const realTimers = { setTimer: (callback: () => void, ms: number) => {
      const timer = setTimeout(callback, ms);
      return () => clearTimeout(timer);
    }, backoff: { initialMs: 1, maxMs: 5 } };
    const first = await spoolMessage();
    const h = harness(undefined, realTimers);
    const completed = h.events.next("message-completed", first);
    h.processor.enqueue(first);
    await completed;
    const perMessage = h.calls.length;
    expect(perMessage).toBeGreaterThan(0);

    const ids: string[] = [];
    for (let i = 0; i < 10; i++) ids.push(await spoolMessage());
    const record = spool.queue.recordOutcome.bind(spool.queue);
    let failures = 0;
    vi.spyOn(spool.queue, "recordOutcome").mockImplementation(async (id, outcome) => {
      if (failures < 30) {
        failures++;
        throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
      }
      return record(id, outcome);
    });
    const done = ids.map((id) => h.events.next("message-completed", id));
    for (const id of ids) h.processor.enqueue(id);
    await Promise.all(done);
    expect(failures).toBe(30);
    expect(h.calls.length).toBe(perMessage * 11);
  });
});

describe("drain", () => {
  it("lets the action in flight finish and be journaled, starts no other, keeps the message pending", async () => {
    const id = await spoolMessage();
    let release: () => void = () => undefined;
    const h = harness(
      (_call, key) =>
        key === "first/1" ? new Promise<ActionOutcome>((resolve) => (release = () => resolve({ status: "done" }))) : { status: "done" },
      { setTimer: (callback, ms) => {
        const timer = setTimeout(callback, ms);
        return () => clearTimeout(timer);
      } },
    );
    h.processor.enqueue(id);
    while (h.calls.length < 2) await new Promise((resolve) => setTimeout(resolve, 1));
    const interrupted = h.events.next("message-interrupted", id);
    const drained = h.processor.drain(5000);
    release();
    await drained;
    await interrupted;
    expect(h.calls).toEqual(["first/0", "first/1"]);
    expect(await spool.queue.pending()).toEqual([id]);
    expect((await spool.queue.read(id)).outcomes.length).toBe(2);
    h.processor.enqueue(id);
    expect(h.calls.length).toBe(2);
  });

  it("gives up waiting after the grace period", async () => {
    const id = await spoolMessage();
    const h = harness(() => new Promise<ActionOutcome>(() => undefined), {
      setTimer: (callback, ms) => {
        const timer = setTimeout(callback, ms);
        return () => clearTimeout(timer);
      },
    });
    h.processor.enqueue(id);
    while (h.calls.length < 1) await new Promise((resolve) => setTimeout(resolve, 1));
    const started = Date.now();
    await h.processor.drain(50);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(await spool.queue.pending()).toEqual([id]);
  });

  it("cancels scheduled retries; the message resumes on the next start", async () => {
    const id = await spoolMessage();
    let fail = true;
    const h = harness((_call, key) => (key === "first/1" && fail ? transient() : { status: "done" }));
    const scheduled = h.events.next("retry-scheduled", id);
    h.processor.enqueue(id);
    await scheduled;
    await h.processor.drain(1000);
    expect(h.timers.active()).toEqual([]);

    fail = false;
    const next = harness();
    const completed = next.events.next("message-completed", id);
    await next.processor.start();
    await completed;
    expect(next.calls).toEqual(["first/1", "second/0", "second/1"]);
  });
});
