import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import type { ReceivedMessage } from "../../src/actions/message.js";
import { newMessageId } from "../../src/mail/message-id.js";
import type { ActionCall, ActionExecutor, ActionOutcome } from "../../src/rules/executor.js";
import type { ActionType, RuleSet } from "../../src/rules/model.js";
import type { CancelTimer, ProcessorEvent } from "../../src/spool/processor.js";
import type { MessageState } from "../../src/spool/format.js";
import type { Snapshot } from "../../src/spool/snapshots.js";
import { expect } from "vitest";
import { lambda, rule, ruleSet, s3, sns } from "../helpers/rules.js";

export const TOPIC = "arn:aws:sns:us-east-1:123456789012:events";
export const FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:check";
export const RECEIVED_AT = new Date("2026-11-23T09:00:00.000Z");

export async function scratchDir(): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "receiptd-spool-"));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

export function newId(): string {
  return newMessageId(randomBytes);
}

/** Two rules for example.com: S3, SNS, then Lambda and S3. */
export function defaultRuleSet(): RuleSet {
  return ruleSet(rule("first", ["example.com"], [s3("bucket-a"), sns(TOPIC)]), rule("second", ["example.com"], [lambda(FUNCTION), s3("bucket-b")]));
}

export function snapshotOf(rules: RuleSet = defaultRuleSet()): Snapshot {
  return { ruleSet: rules, identities: { addresses: [], domains: ["example.com"] } };
}

export function stateFor(id: string, snapshot: string, extra: Partial<MessageState> = {}): MessageState {
  return {
    messageId: id,
    receivedAt: RECEIVED_AT.toISOString(),
    envelope: { mailFrom: "carol@example.net", recipients: ["info@example.com"] },
    client: { ip: "192.0.2.10", helo: "mail.example.net", reverseDns: "mail.example.net", tls: true },
    verdicts: { spam: "DISABLED", virus: "DISABLED", spf: "PASS", dkim: "PASS", dmarc: "PASS" },
    snapshot,
    ...extra,
  };
}

export function messageBytes(id: string, body = "Hello\r\n"): Buffer {
  return Buffer.from(
    "Return-Path: <carol@example.net>\r\n" +
      `Received: from mail.example.net (mail.example.net [192.0.2.10]) by mx.example.com with SMTP id ${id} for info@example.com; Mon, 23 Nov 2026 09:00:00 +0000\r\n` +
      "From: Carol <carol@example.net>\r\nTo: info@example.com\r\nSubject: Hello\r\nMessage-ID: <m1@example.net>\r\n\r\n" +
      body,
  );
}

/**
 * Splits a spool file into the message and the state after it, by the layout described in
 * src/spool/format.ts, written out here independently of the spool's own reader.
 */
export function storedParts(file: Buffer): { message: Buffer; state: unknown } {
  const footer = /\nreceiptd-spool\/1 (\d{16}) (\d{10}) ([0-9a-f]{8})\n$/.exec(file.toString("latin1"));
  if (!footer) throw new Error("no spool footer");
  const messageBytes = Number(footer[1]);
  const stateBytes = Number(footer[2]);
  if (messageBytes + stateBytes + footer[0].length !== file.length) throw new Error("footer sizes do not add up");
  if (crc32(file.subarray(0, messageBytes + stateBytes)) !== Number.parseInt(footer[3]!, 16)) throw new Error("checksum does not match");
  return {
    message: file.subarray(0, messageBytes),
    state: JSON.parse(file.subarray(messageBytes, messageBytes + stateBytes).toString("utf8")),
  };
}

/** The records of done/traces-*.jsonl by message ID (the last one, should a message have two). */
export async function doneTraces(dir: string): Promise<Map<string, { messageId: string; at: string; trace: unknown }>> {
  const records = new Map<string, { messageId: string; at: string; trace: unknown }>();
  for (const name of (await readdir(join(dir, "done"))).filter((n) => /^traces-.*\.jsonl$/.test(n)).sort()) {
    for (const line of (await readFile(join(dir, "done", name), "utf8")).split("\n")) {
      if (line === "") continue;
      const record = JSON.parse(line) as { messageId: string; at: string; trace: unknown };
      expect(name).toBe(`traces-${record.at.slice(0, 10)}.jsonl`);
      records.set(record.messageId, record);
    }
  }
  return records;
}

export async function* chunks(...parts: Buffer[]): AsyncIterable<Buffer> {
  for (const part of parts) yield part;
}

export async function listDir(path: string): Promise<string[]> {
  return (await readdir(path)).sort();
}

/** The files of finished messages in done/: `<UTC hour>/<name>`, sorted. */
export async function doneFiles(dir: string): Promise<string[]> {
  const files: string[] = [];
  for (const hour of (await readdir(join(dir, "done"))).filter((name) => /^\d{4}-\d{2}-\d{2}T\d{2}$/.test(name))) {
    for (const name of await readdir(join(dir, "done", hour))) files.push(`${hour}/${name}`);
  }
  return files.sort();
}

/** Timers fired by the test, not by the clock. */
export class ManualTimers {
  readonly pending: { callback: () => void; delayMs: number; cancelled: boolean }[] = [];

  readonly set = (callback: () => void, delayMs: number): CancelTimer => {
    const timer = { callback, delayMs, cancelled: false };
    this.pending.push(timer);
    return () => {
      timer.cancelled = true;
    };
  };

  /** Delays of the timers not yet fired or cancelled. */
  active(): number[] {
    return this.pending.filter((t) => !t.cancelled).map((t) => t.delayMs);
  }

  fireAll(): void {
    const due = this.pending.splice(0).filter((t) => !t.cancelled);
    for (const timer of due) timer.callback();
  }
}

/** Collects processor events and waits for the ones a test expects. */
export class Events {
  readonly all: ProcessorEvent[] = [];
  private waiters: { match: (e: ProcessorEvent) => boolean; resolve: (e: ProcessorEvent) => void }[] = [];

  readonly listener = (event: ProcessorEvent): void => {
    this.all.push(event);
    for (const waiter of [...this.waiters]) {
      if (waiter.match(event)) {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        waiter.resolve(event);
      }
    }
  };

  /** The next event matching, counting only events from now on. */
  next<K extends ProcessorEvent["event"]>(kind: K, messageId?: string): Promise<Extract<ProcessorEvent, { event: K }>> {
    return new Promise((resolve) => {
      this.waiters.push({
        match: (e) => e.event === kind && (messageId === undefined || ("messageId" in e && e.messageId === messageId)),
        resolve: resolve as (e: ProcessorEvent) => void,
      });
    });
  }

  of<K extends ProcessorEvent["event"]>(kind: K): Extract<ProcessorEvent, { event: K }>[] {
    return this.all.filter((e): e is Extract<ProcessorEvent, { event: K }> => e.event === kind);
  }
}

export type Script = (call: ActionCall<ActionType, ReceivedMessage>, key: string) => ActionOutcome | Promise<ActionOutcome>;

/**
 * An executor that logs each call as `<rule>/<action index>` and answers with the script;
 * the default script says done.
 */
export function scriptedExecutor(script: Script = () => ({ status: "done" })): {
  executor: ActionExecutor<ReceivedMessage>;
  calls: string[];
} {
  const calls: string[] = [];
  const run = async (call: ActionCall<ActionType, ReceivedMessage>) => {
    const key = `${call.rule.name}/${call.actionIndex}`;
    calls.push(key);
    return script(call, key);
  };
  const types: ActionType[] = ["S3", "SNS", "Lambda", "Bounce", "AddHeader", "Stop", "WorkMail", "Connect"];
  return { executor: Object.fromEntries(types.map((t) => [t, run])) as ActionExecutor<ReceivedMessage>, calls };
}
