/**
 * The worker pool that runs the rules of spooled messages (docs/behaviour.md §3 and §8).
 *
 * Every done outcome is journaled before the evaluator moves on, so a message resumes at the
 * first action not recorded done: after a crash an action may run twice, never zero times.
 * Failed outcomes are never journaled; `evaluate` replays `recorded` positionally, and since a
 * failure ends the evaluation, the journal is always a prefix of done outcomes and a retry runs
 * the failed action again in its place, later actions waiting behind it.
 *
 * What lives only in memory, and what a restart therefore changes:
 *  - Scheduled retries: on start every pending message is simply tried at once. The retry
 *    window still counts from `receivedAt` (persisted), only the backoff starts over.
 *  - Failure DSNs: one is sent after the message is dead-lettered, retried a few times with
 *    backoff, then given up (reported through onEvent); a restart in between loses it. A
 *    permanent refusal (a 5xx from the sender's side) is given up at once. The message and its
 *    trace stay in dead/ either way.
 */
import { prependedHeaderBytes } from "../mail/edit.js";
import { buildDsn } from "../mail/dsn.js";
import { isMessageId } from "../mail/message-id.js";
import { withScanVerdicts } from "../mail/stored.js";
import { errorText } from "../ops/log.js";
import type { ReceivedMessage } from "../actions/message.js";
import { ActionError } from "../actions/backend.js";
import type { SendDsnRequest } from "../actions/backend.js";
import { DEFAULTS } from "../config/defaults.js";
import { evaluate } from "../rules/evaluate.js";
import type { EvaluationTrace } from "../rules/evaluate.js";
import type { ActionCall, ActionExecutor, ActionOutcome } from "../rules/executor.js";
import type { ActionType, Identities } from "../rules/model.js";
import { identitiesFrom } from "../rules/recipients.js";
import type { MessageState } from "./format.js";
import type { ScanRecord } from "./journal.js";
import { MessageGone } from "./queue.js";
import type { Queue } from "./queue.js";
import { SnapshotGone } from "./snapshots.js";
import type { Snapshot } from "./snapshots.js";

export interface FailureReply {
  smtpReplyCode: string;
  statusCode: string;
  message: string;
}

/** Cancels a timer set with `setTimer`. */
export type CancelTimer = () => void;

export interface ProcessorOptions {
  spool: Queue;
  executor: ActionExecutor<ReceivedMessage>;
  /** Messages processed at once; the actions of one message always run strictly in order. Default 8. */
  concurrency?: number;
  /**
   * Fewer messages at once while the SMTP side is busy: actions share the disk and libuv's I/O
   * threads with acceptance, and an MX answers its clients first while the backlog waits safely
   * on disk. `isBusy` is asked whenever a message could start; while it says busy and work is
   * waiting, it is asked again every `recheckMs` (default 20). No message waits longer than
   * `maxDeferMs` (DEFAULTS.processingMaxDeferMs) for it: under sustained traffic processing keeps pace.
   */
  whileBusy?: { concurrency: number; isBusy: () => boolean; recheckMs?: number; maxDeferMs?: number };
  /** How long after receipt transient failures are retried (docs/behaviour.md §8). Default 4 hours. */
  retryWindowMs?: number;
  /** Exponential backoff between retries, with jitter. Default 1 s doubling up to 5 min. */
  backoff?: { initialMs: number; maxMs: number };
  clock?: () => Date;
  /** In [0, 1), for the jitter. */
  random?: () => number;
  setTimer?: (callback: () => void, delayMs: number) => CancelTimer;
  /** How the failure DSN of docs/behaviour.md §8 is sent. */
  sendFailureDsn: (request: SendDsnRequest) => Promise<unknown>;
  /** Our host name: the failure DSN's Reporting-MTA and Message-ID domain. */
  hostname: string;
  /** Default 550 5.3.0 "This message could not be delivered due to a recipient error." */
  failureReply?: FailureReply;
  /** From: of the failure DSN. Default `MAILER-DAEMON@<hostname>`. */
  dsnFrom?: string;
  /** Attempts at sending one failure DSN before it is given up. Default 5. */
  dsnAttempts?: number;
  /** Why no DSN may leave now (the account's sending is paused), or null; asked at each dead letter. */
  dsnHeld?: () => string | null;
  /**
   * The spam and virus scan of a message that a scanning rule matched (its stored verdicts are
   * GRAY, not DISABLED), run once before its first action and journaled; absent: no scanner is
   * configured, and the verdicts stay GRAY.
   */
  scan?: (message: ReceivedMessage) => Promise<ScanRecord>;
  onEvent?: (event: ProcessorEvent) => void;
}

/**
 * What the line ending a message's processing says about it; `mailFrom` and `recipients` are
 * missing only from a dead letter whose state could not be read.
 */
export interface MessageSummary {
  messageId: string;
  mailFrom: string;
  /** How many envelope recipients. */
  recipients: number;
  /** The names of the matching rules, in evaluation order, up to the one where it ended. */
  rules: string[];
}

/**
 * Why a message was dead-lettered: permanent_failure (an action failed for good),
 * retry_window_ended (a transient failure outlasted the retry window), snapshot_missing (the
 * rule set it was accepted under is gone), unprocessable (its state or bytes cannot be parsed).
 */
export type DeadLetterCause = "permanent_failure" | "retry_window_ended" | "snapshot_missing" | "unprocessable";

/** What the processor reports, for logs and metrics. */
export type ProcessorEvent =
  | { event: "message-started"; messageId: string; attempt: number }
  | ({ event: "message-completed"; outcome: "done"; durationMs: number } & MessageSummary)
  | ({ event: "message-stopped"; outcome: "stopped"; durationMs: number } & MessageSummary)
  | { event: "retry-scheduled"; messageId: string; attempt: number; delayMs: number; error: string }
  | ({
      event: "message-dead-lettered";
      outcome: "dead";
      reason: string;
      /** The reason's kind, a closed set for metric labels; `reason` has the detail. */
      cause: DeadLetterCause;
      /** Whether a failure DSN is on its way, and if not, why. */
      dsn: "sending" | "null sender" | "message unreadable" | "held";
      /** With `held`: why (the account's sending is paused). */
      dsnHeld?: string;
    } & Partial<Pick<MessageSummary, "mailFrom" | "recipients">> &
      Omit<MessageSummary, "mailFrom" | "recipients">)
  /** Processing stopped by drain() between two actions; the message stays pending. */
  | { event: "message-interrupted"; messageId: string }
  /** enqueue()d, but not (or no longer) in the queue, or found never committed and removed. */
  | { event: "message-missing"; messageId: string; error: string }
  | { event: "action-done"; messageId: string; action: ActionType; rule: string; durationMs: number }
  | {
      event: "action-failed";
      messageId: string;
      action: ActionType;
      rule: string;
      failure: "transient" | "permanent";
      error: string;
      durationMs: number;
    }
  /** The spool itself failed (disk full, I/O error); the message is retried for as long as it takes. */
  | { event: "spool-error"; messageId: string; error: string; delayMs: number }
  | { event: "dsn-sent"; messageId: string; to: string }
  | { event: "message-scanned"; messageId: string; spam: string; virus: string; durationMs: number; detail?: Record<string, string> }
  | {
      event: "dsn-failed";
      messageId: string;
      to: string;
      attempt: number;
      error: string;
      /** No further attempt follows: attempts used up, draining, or refused for good. */
      final: boolean;
      failure: "transient" | "permanent";
    };

const DEFAULT_CONCURRENCY = DEFAULTS.processing.concurrency;
const DEFAULT_RETRY_WINDOW_MS = DEFAULTS.processing.retryWindowMinutes * 60_000;
const DEFAULT_BACKOFF = { initialMs: DEFAULTS.processing.backoffInitialMs, maxMs: DEFAULTS.processing.backoffMaxMs };
const DEFAULT_DSN_ATTEMPTS = 5;
export const DEFAULT_FAILURE_REPLY: FailureReply = Object.freeze({
  smtpReplyCode: "550",
  statusCode: "5.3.0",
  message: "This message could not be delivered due to a recipient error.",
});

const ACTION_TYPES: readonly ActionType[] = ["S3", "SNS", "Lambda", "Bounce", "AddHeader", "Stop", "WorkMail", "Connect"];

/** Thrown into the evaluator by drain() to stop a message between two actions. */
class Interrupted extends Error {}

/** An operating-system error (it has an errno code): the disk, not the message, is at fault. */
function isSystemError(error: unknown): boolean {
  return typeof (error as { code?: unknown } | null)?.code === "string";
}

function realTimer(callback: () => void, delayMs: number): CancelTimer {
  const timer = setTimeout(callback, delayMs);
  return () => clearTimeout(timer);
}

interface Loaded {
  state: MessageState;
  message: ReceivedMessage;
}

export class Processor {
  private readonly spool: Queue;
  private readonly executor: ActionExecutor<ReceivedMessage>;
  private readonly concurrency: number;
  private readonly whileBusy: ProcessorOptions["whileBusy"];
  private recheck: CancelTimer | null = null;
  private readonly retryWindowMs: number;
  private readonly backoff: { initialMs: number; maxMs: number };
  private readonly clock: () => Date;
  private readonly random: () => number;
  private readonly setTimer: (callback: () => void, delayMs: number) => CancelTimer;
  private readonly sendFailureDsn: (request: SendDsnRequest) => Promise<unknown>;
  private readonly hostname: string;
  private readonly failureReply: FailureReply;
  private readonly dsnFrom: string;
  private readonly dsnAttempts: number;
  private readonly dsnHeld: () => string | null;
  private readonly scan: ((message: ReceivedMessage) => Promise<ScanRecord>) | undefined;
  /** Requeued dead letters: when their retry window starts. */
  private readonly windowStarts = new Map<string, number>();
  private readonly onEvent: (event: ProcessorEvent) => void;

  private readonly ready: string[] = [];
  /** When each ready message became ready, for whileBusy.maxDeferMs. */
  private readonly readySince = new Map<string, number>();
  /** Every message this processor has in hand: ready, running or waiting for a retry. */
  private readonly known = new Set<string>();
  private readonly running = new Map<string, Promise<void>>();
  private readonly retries = new Map<string, { attempts: number; cancel: CancelTimer | null }>();
  private readonly dsnSends = new Set<Promise<void>>();
  /** Wakes the DSN sends sleeping between attempts. */
  private readonly dsnWakers = new Set<() => void>();
  private readonly identities = new WeakMap<Snapshot, Identities>();
  private draining = false;
  /** A journal write failed and none has succeeded since: no message starts meanwhile. */
  private journalDown = false;

  constructor(options: ProcessorOptions) {
    this.spool = options.spool;
    this.executor = options.executor;
    this.concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
    this.whileBusy = options.whileBusy;
    this.retryWindowMs = options.retryWindowMs ?? DEFAULT_RETRY_WINDOW_MS;
    this.backoff = options.backoff ?? DEFAULT_BACKOFF;
    this.clock = options.clock ?? (() => new Date());
    this.random = options.random ?? Math.random;
    this.setTimer = options.setTimer ?? realTimer;
    this.sendFailureDsn = options.sendFailureDsn;
    this.hostname = options.hostname;
    this.failureReply = options.failureReply ?? DEFAULT_FAILURE_REPLY;
    this.dsnFrom = options.dsnFrom ?? `MAILER-DAEMON@${options.hostname}`;
    this.dsnAttempts = options.dsnAttempts ?? DEFAULT_DSN_ATTEMPTS;
    this.dsnHeld = options.dsnHeld ?? (() => null);
    this.scan = options.scan;
    const onEvent = options.onEvent;
    // A failing listener must not take message processing down with it.
    this.onEvent = (event) => {
      try {
        onEvent?.(event);
      } catch {
        // Reporting is best effort.
      }
    };
    for (const [name, value] of [
      ["concurrency", this.concurrency],
      ["whileBusy.concurrency", this.whileBusy?.concurrency ?? 1],
    ] as const) {
      if (!(Number.isInteger(value) && value >= 1)) throw new RangeError(`${name} must be a positive integer, got ${value}`);
    }
  }

  /** Takes up every message left pending by an earlier run; new ones come through enqueue(). */
  async start(): Promise<void> {
    for (const id of await this.spool.pending()) this.enqueue(id);
  }

  /** Hands over a message whose accept() has resolved. A message already in hand is not taken twice. */
  enqueue(id: string): void {
    if (!isMessageId(id)) throw new TypeError(`not a message ID: ${JSON.stringify(id)}`);
    if (this.draining || this.known.has(id)) return;
    this.known.add(id);
    this.makeReady(id);
  }

  /**
   * Hands over a dead letter just put back into the queue: processed like any pending message,
   * with a retry window that starts now rather than at its receipt (kept in memory only: after
   * a restart the window counts from receipt again).
   */
  requeued(id: string): void {
    this.windowStarts.set(id, this.now());
    this.enqueue(id);
  }

  private makeReady(id: string): void {
    this.ready.push(id);
    this.readySince.set(id, this.now());
    this.pump();
  }

  /**
   * For SIGTERM: takes no new work, lets actions in flight finish (their outcomes are journaled),
   * starts no further action, and resolves when all that is done or `graceMs` has passed. Whatever
   * did not finish stays pending in the spool and resumes on the next start.
   */
  async drain(graceMs: number): Promise<void> {
    this.draining = true;
    this.ready.length = 0;
    this.readySince.clear();
    this.recheck?.();
    this.recheck = null;
    for (const retry of this.retries.values()) retry.cancel?.();
    this.retries.clear();
    // A DSN waiting for its next attempt tries once more now, while the grace period lasts.
    for (const wake of this.dsnWakers) wake();
    // Messages in flight may still dead-letter and so start a DSN: those are waited for as well.
    const work = (async () => {
      await Promise.allSettled(this.running.values());
      await Promise.allSettled(this.dsnSends);
    })();
    let cancel: CancelTimer = () => undefined;
    const grace = new Promise<void>((resolve) => {
      cancel = this.setTimer(resolve, graceMs);
    });
    await Promise.race([work, grace]);
    cancel();
  }

  private pump(): void {
    const oldest = this.ready[0];
    const overdue =
      oldest !== undefined && this.now() - (this.readySince.get(oldest) ?? this.now()) > (this.whileBusy?.maxDeferMs ?? DEFAULTS.processingMaxDeferMs);
    const busy = this.whileBusy !== undefined && !overdue && this.whileBusy.isBusy();
    const limit = busy ? Math.min(this.whileBusy!.concurrency, this.concurrency) : this.concurrency;
    while (!this.draining && !this.journalDown && this.running.size < limit) {
      const id = this.ready.shift();
      if (id === undefined) return;
      this.readySince.delete(id);
      const run = this.process(id).finally(() => {
        this.running.delete(id);
        this.pump();
      });
      this.running.set(id, run);
    }
    // Held back by a busy SMTP side: look again soon, since nothing else would start the rest.
    if (busy && !this.draining && this.ready.length > 0 && this.recheck === null) {
      this.recheck = this.setTimer(() => {
        this.recheck = null;
        this.pump();
      }, this.whileBusy!.recheckMs ?? 20);
    }
  }

  private now(): number {
    return this.clock().getTime();
  }

  private emit(event: ProcessorEvent): void {
    this.onEvent(event);
  }

  /** The message is not in the queue (any more): no retry can find it. */
  private gone(id: string, error: MessageGone): void {
    this.forget(id);
    this.emit({ event: "message-missing", messageId: id, error: errorText(error) });
  }

  /** Scans a message that a scanning rule matched and journals the verdicts; null when none is wanted or no scanner is configured. */
  private async scanOnce(id: string, state: MessageState, message: ReceivedMessage): Promise<ScanRecord | null> {
    if (!this.scan || state.verdicts.spam === "DISABLED") return null;
    const started = this.now();
    const scan = await this.scan(message);
    await this.spool.recordScan(id, scan);
    this.emit({ event: "message-scanned", messageId: id, spam: scan.spam, virus: scan.virus, durationMs: this.now() - started, ...(scan.detail ? { detail: scan.detail } : {}) });
    return scan;
  }

  /** Lets go of a message that has left the queue, or that this processor will not touch again. */
  private forget(id: string): void {
    this.known.delete(id);
    this.retries.delete(id);
    this.windowStarts.delete(id);
  }

  private async process(id: string): Promise<void> {
    const attempt = (this.retries.get(id)?.attempts ?? 0) + 1;
    const started = this.now();
    this.emit({ event: "message-started", messageId: id, attempt });
    let loaded: Loaded | undefined;
    let trace: EvaluationTrace;
    try {
      const { state, outcomes, message: stored, scan: journaled } = await this.spool.read(id);
      loaded = { state, message: stored };
      const snapshot = await this.spool.loadSnapshot(state.snapshot);
      const scan = journaled ?? (await this.scanOnce(id, state, stored));
      // The scan's verdicts, in the receipt and in the X-SES headers, are what every action sees.
      const message = scan ? { ...stored, verdicts: { ...stored.verdicts, spam: scan.spam, virus: scan.virus } } : stored;
      const receiptHeaders = state.receiptHeaders ?? [];
      trace = await evaluate(
        {
          ruleSet: snapshot.ruleSet,
          identities: this.identitiesOf(snapshot),
          envelope: state.envelope,
          messageId: id,
          message,
          prependedHeaders: scan ? withScanVerdicts(receiptHeaders, scan) : receiptHeaders,
          recorded: outcomes,
        },
        this.journaling(id),
      );
    } catch (error) {
      if (error instanceof Interrupted) {
        this.forget(id);
        this.emit({ event: "message-interrupted", messageId: id });
      } else if (error instanceof MessageGone) {
        this.gone(id, error);
      } else if (error instanceof SnapshotGone) {
        await this.abandon(id, attempt, loaded, null, "snapshot_missing", `snapshot missing: ${errorText(error)}`);
      } else if (isSystemError(error)) {
        // Reading failed on I/O, or the journal could not be written: the disk's trouble, not the message's.
        this.spoolTrouble(id, attempt, error);
      } else {
        // The state, the message or its snapshot cannot be parsed: no retry will change that.
        await this.abandon(id, attempt, loaded, null, "unprocessable", `unprocessable: ${errorText(error)}`);
      }
      return;
    }
    if (trace.end === "failed") {
      const failed = trace.outcomes.at(-1) as Extract<ActionOutcome, { status: "failed" }>;
      await this.failed(id, attempt, loaded, trace, failed);
      return;
    }
    try {
      await this.spool.complete(id, trace);
    } catch (error) {
      if (error instanceof MessageGone) this.gone(id, error);
      // Every outcome is journaled, so the retry replays them all and only the move is done again.
      else this.spoolTrouble(id, attempt, error);
      return;
    }
    this.forget(id);
    const durationMs = this.now() - started;
    const summary = {
      messageId: id,
      mailFrom: loaded.state.envelope.mailFrom,
      recipients: loaded.state.envelope.recipients.length,
      rules: trace.rules.map((rule) => rule.name),
      durationMs,
    };
    this.emit(
      trace.end === "stopped"
        ? { event: "message-stopped", outcome: "stopped", ...summary }
        : { event: "message-completed", outcome: "done", ...summary },
    );
  }

  private identitiesOf(snapshot: Snapshot): Identities {
    let identities = this.identities.get(snapshot);
    if (!identities) {
      identities = identitiesFrom([...snapshot.identities.addresses, ...snapshot.identities.domains]);
      this.identities.set(snapshot, identities);
    }
    return identities;
  }

  /**
   * The executor the evaluator sees: it runs the real one and journals each done outcome before
   * the evaluator may go on. An executor that throws instead of returning a failed outcome is
   * taken as failing transiently, as anything unclassified is.
   */
  private journaling(id: string): ActionExecutor<ReceivedMessage> {
    const run = async (call: ActionCall<ActionType, ReceivedMessage>): Promise<ActionOutcome> => {
      if (this.draining) throw new Interrupted();
      const started = this.now();
      const execute = this.executor[call.type] as (call: ActionCall<ActionType, ReceivedMessage>) => Promise<ActionOutcome>;
      let outcome: ActionOutcome;
      try {
        outcome = await execute(call);
      } catch (error) {
        outcome = { status: "failed", failure: "transient", error: errorText(error) };
      }
      const durationMs = this.now() - started;
      const about = { messageId: id, action: call.type, rule: call.rule.name, durationMs };
      if (outcome.status === "done") {
        await this.record(id, outcome);
        this.emit({ event: "action-done", ...about });
      } else {
        this.emit({ event: "action-failed", ...about, failure: outcome.failure, error: outcome.error });
      }
      return outcome;
    };
    return Object.fromEntries(ACTION_TYPES.map((type) => [type, run])) as ActionExecutor<ReceivedMessage>;
  }

  /**
   * Journals a done outcome, however long the spool takes to take it. While it cannot (disk
   * full), no message starts and the outcome is written again with backoff: re-running the
   * action instead would repeat it on every attempt without ever getting further.
   */
  private async record(id: string, outcome: ActionOutcome): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.spool.recordOutcome(id, outcome);
      } catch (error) {
        // drain() gives up: the action may run again after the restart, as after a crash.
        if (this.draining) throw error;
        this.journalDown = true;
        const delayMs = this.backoffDelay(attempt);
        this.emit({ event: "spool-error", messageId: id, error: errorText(error), delayMs });
        await this.pause(delayMs);
        continue;
      }
      if (this.journalDown) {
        this.journalDown = false;
        this.pump();
      }
      return;
    }
  }

  private async failed(
    id: string,
    attempt: number,
    loaded: Loaded,
    trace: EvaluationTrace,
    outcome: Extract<ActionOutcome, { status: "failed" }>,
  ): Promise<void> {
    if (outcome.failure === "permanent") {
      await this.abandon(id, attempt, loaded, trace, "permanent_failure", `permanent failure: ${outcome.error}`);
      return;
    }
    const now = this.now();
    const deadline = (this.windowStarts.get(id) ?? Date.parse(loaded.state.receivedAt)) + this.retryWindowMs;
    if (now < deadline) {
      // The last retry is at the window's end rather than after it.
      const delayMs = Math.min(this.backoffDelay(attempt), deadline - now);
      this.schedule(id, attempt, delayMs);
      this.emit({ event: "retry-scheduled", messageId: id, attempt, delayMs, error: outcome.error });
      return;
    }
    await this.abandon(id, attempt, loaded, trace, "retry_window_ended", `retry window of ${this.retryWindowMs} ms ended: ${outcome.error}`);
  }

  /** Dead-letters the message and sends the failure DSN (docs/behaviour.md §8). */
  private async abandon(
    id: string,
    attempt: number,
    loaded: Loaded | undefined,
    trace: EvaluationTrace | null,
    cause: DeadLetterCause,
    reason: string,
  ): Promise<void> {
    const sender = loaded?.state.envelope.mailFrom;
    // Asked only of a DSN that would go out: it is the one reason left not to send it.
    const held = loaded && sender !== "" ? this.dsnHeld() : null;
    const dsn = !loaded ? "message unreadable" : sender === "" ? "null sender" : held !== null ? "held" : "sending";
    // The dead letter's record says why no DSN went out; a DSN sent is in the log (dsn-sent, dsn-failed).
    const notSent = dsn === "sending" ? undefined : (held ?? dsn);
    try {
      await this.spool.deadLetter(id, trace, reason, notSent);
    } catch (error) {
      if (error instanceof MessageGone) this.gone(id, error);
      else this.spoolTrouble(id, attempt, error);
      return;
    }
    this.forget(id);
    const rules = trace?.rules.map((rule) => rule.name) ?? [];
    const envelope = loaded && { mailFrom: loaded.state.envelope.mailFrom, recipients: loaded.state.envelope.recipients.length };
    this.emit({
      event: "message-dead-lettered",
      outcome: "dead",
      messageId: id,
      ...envelope,
      rules,
      cause,
      reason,
      dsn,
      ...(held === null ? {} : { dsnHeld: held }),
    });
    if (loaded && dsn === "sending") this.sendDsn(id, loaded, trace);
  }

  private sendDsn(id: string, { state, message }: Loaded, trace: EvaluationTrace | null): void {
    const to = state.envelope.mailFrom;
    const send = async () => {
      let raw: Buffer;
      try {
        raw = buildDsn({
          reportingMta: this.hostname,
          arrivalDate: message.receivedAt,
          date: this.clock(),
          // Derived from the message, so that every attempt sends the same DSN and receivers can tell.
          messageId: `<${id}.failure@${this.hostname}>`,
          from: this.dsnFrom,
          to,
          recipients: state.envelope.recipients,
          ...this.failureReply,
          originalHeaders: Buffer.concat([prependedHeaderBytes(trace?.prependedHeaders ?? []), message.headerBlock]),
          ...originalMessageId(message),
        });
      } catch (error) {
        this.emit({
          event: "dsn-failed",
          messageId: id,
          to,
          attempt: 0,
          error: errorText(error),
          final: true,
          failure: "permanent",
        });
        return;
      }
      for (let attempt = 1; ; attempt++) {
        try {
          await this.sendFailureDsn({ to, raw });
          this.emit({ event: "dsn-sent", messageId: id, to });
          return;
        } catch (error) {
          // A refusal for good (a 5xx, docs/behaviour.md §8) would only be refused again.
          const failure = error instanceof ActionError ? error.failure : "transient";
          const final = failure === "permanent" || attempt >= this.dsnAttempts || this.draining;
          this.emit({ event: "dsn-failed", messageId: id, to, attempt, error: errorText(error), final, failure });
          if (final) return;
        }
        await this.pause(this.backoffDelay(attempt));
      }
    };
    const sending = send().finally(() => this.dsnSends.delete(sending));
    this.dsnSends.add(sending);
  }

  /** A timer drain() can cut short (DSN retries, journal writes). */
  private pause(delayMs: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        this.dsnWakers.delete(wake);
        cancel();
        resolve();
      };
      const cancel = this.setTimer(wake, delayMs);
      this.dsnWakers.add(wake);
    });
  }

  /**
   * The spool failed under the message. It is retried with backoff for as long as that takes and
   * without regard to the retry window: the message is not at fault, and giving it up would need
   * the same disk.
   */
  private spoolTrouble(id: string, attempt: number, error: unknown): void {
    const delayMs = this.backoffDelay(attempt);
    this.schedule(id, attempt, delayMs);
    this.emit({ event: "spool-error", messageId: id, error: errorText(error), delayMs });
  }

  private schedule(id: string, attempts: number, delayMs: number): void {
    if (this.draining) {
      this.forget(id);
      return;
    }
    const retry: { attempts: number; cancel: CancelTimer | null } = { attempts, cancel: null };
    retry.cancel = this.setTimer(() => {
      retry.cancel = null;
      this.makeReady(id);
    }, delayMs);
    this.retries.set(id, retry);
  }

  /** Exponential, with "equal jitter": between half and all of the doubled delay, so retries of many messages spread out. */
  private backoffDelay(attempt: number): number {
    const { initialMs, maxMs } = this.backoff;
    const full = Math.min(maxMs, initialMs * 2 ** Math.min(attempt - 1, 52));
    return Math.round(full / 2 + (full / 2) * this.random());
  }
}

function originalMessageId(message: ReceivedMessage): { originalMessageId?: string } {
  const header = message.headers.find((h) => h.name.toLowerCase() === "message-id");
  return header ? { originalMessageId: header.value.trim() } : {};
}
