import cluster from "node:cluster";
import type { Worker } from "node:cluster";
import { fileURLToPath } from "node:url";
import type { ReceiptdConfig } from "../config/config.js";
import type { Logger } from "../ops/log.js";
import type { PolicyTexts } from "../ops/reload.js";
import type { BoundAddress, SmtpEvent } from "../smtp/index.js";
import { receiving } from "./intake.js";
import type { AuthReport } from "./intake.js";

/*
 * With `smtp.processes` above 1, SMTP is served by that many acceptor processes (Node's cluster
 * module, so that they share the listening sockets). Each runs the same listener and stores
 * messages in the same spool as the single-process daemon does, and tells the daemon's process
 * what happened; processing, the admin port, reloads and the logs stay with the daemon.
 */

/** What an acceptor tells the daemon, batched per turn of its event loop. */
export type AcceptorReport =
  | { kind: "smtp"; event: SmtpEvent }
  | { kind: "accepted"; seconds: number }
  | { kind: "authenticated"; report: AuthReport };

export type ToAcceptor =
  | { type: "start"; index: number; config: ReceiptdConfig; policy: PolicyTexts }
  | { type: "policy"; policy: PolicyTexts }
  | { type: "stop"; graceMs: number };

export type FromAcceptor =
  /** Its message handler is in place: messages sent before that are lost (an ES module loads asynchronously). */
  | { type: "ready" }
  | { type: "listening"; addresses: BoundAddress[] }
  | { type: "failed"; error: string }
  | { type: "reports"; reports: AcceptorReport[]; accepting: number };

/** Compiled beside this file; an acceptor process starts there. */
const ACCEPTOR_ENTRY = fileURLToPath(new URL("./acceptor-process.js", import.meta.url));
/** An acceptor that lived this long before it died is replaced at once; sooner, after a growing pause. */
const STABLE_AFTER_MS = 10_000;
const RESTART_PAUSE_MAX_MS = 30_000;
/** After the grace period, how long an acceptor may take to exit before it is killed. */
const EXIT_MARGIN_MS = 5_000;

export interface AcceptorPoolOptions {
  count: number;
  config: ReceiptdConfig;
  /** The policy in effect when an acceptor starts. */
  policy: () => PolicyTexts;
  logger: Logger;
  onReport: (report: AcceptorReport, acceptor: number) => void;
  /** An acceptor died: messages it accepted but had not reported must be found in the spool. */
  onLost: (acceptor: number) => void;
}

interface Slot {
  index: number;
  worker: Worker;
  startedAt: number;
  /** It has said that it takes messages; until then, stopping it takes a signal. */
  ready: boolean;
  accepting: number;
  lastActive: number;
  failuresInARow: number;
  exited: Promise<void>;
}

class AcceptorStartError extends Error {
  override readonly name = "AcceptorStartError";
}

export class AcceptorPool {
  private readonly slots = new Map<number, Slot>();
  private readonly restarts = new Set<NodeJS.Timeout>();
  private bound: BoundAddress[] = [];
  private stopping = false;

  private constructor(private readonly options: AcceptorPoolOptions) {}

  /** Starts every acceptor and resolves once all listen; rejects (with none left running) when one cannot. */
  static async start(options: AcceptorPoolOptions): Promise<AcceptorPool> {
    // Node's default on Linux hands every connection out from this process, which is busy
    // processing; with SCHED_NONE the acceptors take connections from the shared socket
    // themselves. NODE_CLUSTER_SCHED_POLICY=rr still chooses the other.
    if (process.env.NODE_CLUSTER_SCHED_POLICY === undefined) cluster.schedulingPolicy = cluster.SCHED_NONE;
    cluster.setupPrimary({ exec: ACCEPTOR_ENTRY, args: [] });
    const pool = new AcceptorPool(options);
    const started = await Promise.allSettled(Array.from({ length: options.count }, (_, index) => pool.fork(index, 0)));
    const failure = started.find((result): result is PromiseRejectedResult => result.status === "rejected");
    if (failure) {
      await pool.stop(0);
      throw failure.reason;
    }
    return pool;
  }

  addresses(): BoundAddress[] {
    return this.bound;
  }

  busy(): boolean {
    const now = performance.now();
    for (const slot of this.slots.values()) if (receiving(slot.accepting, slot.lastActive, now)) return true;
    return false;
  }

  /** Hands a new policy to every acceptor; each applies it to its next command. */
  broadcastPolicy(policy: PolicyTexts): void {
    for (const slot of this.slots.values()) send(slot.worker, { type: "policy", policy });
  }

  /** Stops every acceptor: no new connections, sessions get `graceMs` to finish; the rest are killed. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    for (const timer of this.restarts) clearTimeout(timer);
    this.restarts.clear();
    const slots = [...this.slots.values()];
    for (const slot of slots) {
      if (slot.ready) send(slot.worker, { type: "stop", graceMs });
      else slot.worker.process.kill("SIGTERM");
    }
    const killer = setTimeout(() => {
      for (const slot of slots) {
        if (!slot.worker.isDead()) {
          this.options.logger.warn("smtp.acceptor_killed", { acceptor: slot.index, pid: slot.worker.process.pid });
          slot.worker.process.kill("SIGKILL");
        }
      }
    }, graceMs + EXIT_MARGIN_MS);
    await Promise.all(slots.map((slot) => slot.exited));
    clearTimeout(killer);
  }

  private fork(index: number, failuresInARow: number): Promise<void> {
    const { logger } = this.options;
    const worker = cluster.fork({ RECEIPTD_ACCEPTOR: String(index) });
    let listening = false;
    const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
    const slot: Slot = { index, worker, startedAt: performance.now(), ready: false, accepting: 0, lastActive: 0, failuresInARow, exited };
    this.slots.set(index, slot);

    return new Promise<void>((resolve, reject) => {
      worker.on("message", (message: FromAcceptor) => {
        switch (message.type) {
          case "ready":
            slot.ready = true;
            send(worker, { type: "start", index, config: this.options.config, policy: this.options.policy() });
            return;
          case "listening":
            listening = true;
            if (this.bound.length === 0) this.bound = message.addresses;
            logger.debug("smtp.acceptor_started", { acceptor: index, pid: worker.process.pid });
            resolve();
            return;
          case "failed":
            reject(new AcceptorStartError(`SMTP acceptor ${index}: ${message.error}`));
            return;
          case "reports":
            slot.accepting = message.accepting;
            slot.lastActive = performance.now();
            for (const report of message.reports) this.options.onReport(report, index);
            return;
        }
      });
      worker.once("exit", (code, signal) => {
        if (this.slots.get(index) === slot) this.slots.delete(index);
        if (!listening) {
          reject(new AcceptorStartError(`SMTP acceptor ${index} exited (${signal ?? `code ${code}`}) before it listened`));
          return;
        }
        if (this.stopping) return;
        logger.error("smtp.acceptor_exited", { acceptor: index, pid: worker.process.pid, code, signal });
        this.options.onLost(index);
        this.replace(slot);
      });
    });
  }

  /** A new acceptor in a dead one's place; one that keeps dying is restarted ever more slowly. */
  private replace(dead: Slot): void {
    const stable = performance.now() - dead.startedAt >= STABLE_AFTER_MS;
    const failures = stable ? 0 : dead.failuresInARow + 1;
    const pauseMs = failures === 0 ? 0 : Math.min(RESTART_PAUSE_MAX_MS, 500 * 2 ** (failures - 1));
    const timer = setTimeout(() => {
      this.restarts.delete(timer);
      if (this.stopping) return;
      this.fork(dead.index, failures).catch((error: unknown) => {
        this.options.logger.error("smtp.acceptor_restart_failed", { acceptor: dead.index, error });
        if (!this.stopping && !this.slots.has(dead.index)) this.replace({ ...dead, startedAt: performance.now(), failuresInARow: failures });
      });
    }, pauseMs);
    this.restarts.add(timer);
  }
}

function send(worker: Worker, message: ToAcceptor): void {
  // An acceptor that is going away cannot take messages; its exit is handled on its own.
  if (worker.isConnected()) worker.send(message, (error: Error | null) => void error);
}
