import { Worker } from "node:worker_threads";
import { DEFAULTS } from "../config/defaults.js";
import type { AuthEnvelope } from "./auth-check.js";
import { AUTH_FAILED, SLOT_BYTES, SLOTS } from "./auth-protocol.js";
import type { FromWorker, ToWorker } from "./auth-protocol.js";
import type { AuthResult, DnsResolver } from "./auth.js";

/*
 * Authentication worker threads. mailauth's parsing of a hostile header block within the DATA
 * limits (src/smtp/scanner.ts) still takes the better part of a second, which must not be the
 * SMTP thread's second (docs/behaviour.md §5). Each worker runs many messages at once (most of a
 * message's time is DNS, asked of this thread), so a few workers are enough.
 */

/**
 * Node runs a worker's file itself, and Node 20 cannot run TypeScript: run from the sources (the
 * tests), the worker is the build's copy, which test/global-setup.ts makes before every run.
 */
const WORKER_ENTRY = new URL(import.meta.url.endsWith(".ts") ? "../../dist/mail/auth-worker.js" : "./auth-worker.js", import.meta.url);
/** Bytes of a message that may wait in the worker unread. */
const WINDOW_BYTES = 1024 * 1024;
/**
 * How long a worker may go without taking bytes or answering, past the message's DNS budget,
 * before it is taken to hang: the worst header block measured takes 0.7 s of mailauth's time.
 */
const CPU_ALLOWANCE_MS = 10_000;
/** A worker's heap: mailauth holds header blocks as strings; a worker past this dies, not the daemon. */
const HEAP_MB = 512;

export interface AuthPoolOptions {
  /** Worker threads; default DEFAULTS.authentication.workers. */
  size?: number;
  /** Heap limit of each worker, in MB. */
  heapMb?: number;
  /** How long past the DNS budget a worker may go silent before it counts as hung. */
  cpuAllowanceMs?: number;
}

interface Job {
  id: number;
  running: Running;
  resolver: DnsResolver;
  /** Bytes sent that mailauth has not taken yet. */
  unread: number;
  result: AuthResult | undefined;
  /** Wakes the sender waiting for the worker. */
  progress: (() => void) | undefined;
}

interface Running {
  /** Its place in the pool. */
  place: number;
  worker: Worker;
  jobs: Map<number, Job>;
  /** The buffer the messages' bytes cross in (src/mail/auth-protocol.ts), and its free slots. */
  shared: Uint8Array;
  free: number[];
}

export class AuthPool {
  private readonly places: (Running | undefined)[];
  private readonly heapMb: number;
  private readonly cpuAllowanceMs: number;
  private lastJob = 0;

  constructor(options: AuthPoolOptions = {}) {
    const size = options.size ?? DEFAULTS.authentication.workers;
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`AuthPool size: expected a whole number of at least 1, got ${size}`);
    this.places = new Array<Running | undefined>(size).fill(undefined);
    this.heapMb = options.heapMb ?? HEAP_MB;
    this.cpuAllowanceMs = options.cpuAllowanceMs ?? CPU_ALLOWANCE_MS;
  }

  /**
   * Streams the message to a worker, which authenticates it. Never throws: a message that cannot
   * be read, or a worker that dies or hangs, gives AUTH_FAILED, as mailauth failing did on the
   * daemon's thread; a dead or hung worker is replaced by the next message. The message is read
   * to its end in every case, so that a tee feeding it is never left waiting.
   */
  async authenticate(envelope: AuthEnvelope, message: Buffer | AsyncIterable<Buffer>, resolver: DnsResolver, timeoutMs: number): Promise<AuthResult> {
    const running = this.leastBusy();
    const job: Job = { id: ++this.lastJob, running, resolver, unread: 0, result: undefined, progress: undefined };
    running.jobs.set(job.id, job);
    running.worker.ref();
    const send = (message: ToWorker) => running.worker.postMessage(message);
    send({ type: "start", job: job.id, envelope });
    const stallMs = timeoutMs + this.cpuAllowanceMs;
    try {
      for await (const chunk of Buffer.isBuffer(message) ? [message] : message) {
        for (let offset = 0; offset < chunk.length && !job.result; offset += SLOT_BYTES) {
          let slot: number | undefined;
          while ((slot = running.free.pop()) === undefined && !job.result) await this.waitFor(job, stallMs);
          if (slot === undefined) break;
          const length = chunk.copy(running.shared, slot * SLOT_BYTES, offset, offset + SLOT_BYTES);
          send({ type: "chunk", job: job.id, slot, length });
          job.unread += length;
        }
        while (job.unread > WINDOW_BYTES && !job.result) await this.waitFor(job, stallMs);
      }
    } catch {
      if (!job.result) {
        send({ type: "abort", job: job.id });
        this.finish(job, AUTH_FAILED);
      }
    }
    if (!job.result) send({ type: "end", job: job.id });
    while (!job.result) await this.waitFor(job, stallMs);
    return job.result;
  }

  /** Stops the workers; messages being authenticated get AUTH_FAILED. */
  async close(): Promise<void> {
    await Promise.all(this.places.map((running) => running?.worker.terminate()));
  }

  private leastBusy(): Running {
    let best = 0;
    for (let i = 0; i < this.places.length; i++) {
      const running = this.places[i];
      if (!running) return this.spawn(i);
      if (running.jobs.size < this.places[best]!.jobs.size) best = i;
    }
    return this.places[best]!;
  }

  private spawn(place: number): Running {
    const shared = new SharedArrayBuffer(SLOTS * SLOT_BYTES);
    const worker = new Worker(WORKER_ENTRY, { workerData: shared, resourceLimits: { maxOldGenerationSizeMb: this.heapMb } });
    const free = Array.from({ length: SLOTS }, (_, index) => index);
    const running: Running = { place, worker, jobs: new Map(), shared: new Uint8Array(shared), free };
    this.places[place] = running;
    worker.unref();
    worker.on("message", (message: FromWorker) => this.onMessage(running, message));
    // Out of memory, or a fault: the exit that follows fails its messages.
    worker.on("error", () => undefined);
    worker.on("exit", () => {
      this.retire(running);
      for (const job of running.jobs.values()) this.finish(job, AUTH_FAILED);
    });
    return running;
  }

  /** No new message goes to this worker. */
  private retire(running: Running): void {
    if (this.places[running.place] === running) this.places[running.place] = undefined;
  }

  private onMessage(running: Running, message: FromWorker): void {
    if (message.type === "free") {
      running.free.push(message.slot);
      for (const waiting of running.jobs.values()) waiting.progress?.();
      return;
    }
    const job = running.jobs.get(message.job);
    if (!job) return;
    switch (message.type) {
      case "taken":
        job.unread -= message.bytes;
        job.progress?.();
        break;
      case "result":
        this.finish(job, message.result);
        break;
      case "dns":
        void this.answer(job, message.query, message.name, message.rrtype);
        break;
    }
  }

  /**
   * DNS is answered here rather than in the worker so that the resolver stays whatever the caller
   * gave (a function cannot cross to another thread) and one budget covers the message.
   */
  private async answer(job: Job, query: number, name: string, rrtype: string): Promise<void> {
    let reply: ToWorker;
    try {
      reply = { type: "dns", query, answer: await job.resolver(name, rrtype) };
    } catch (error) {
      const { message, code } = Object(error) as { message?: unknown; code?: unknown };
      reply = { type: "dns", query, error: { message: String(message), ...(typeof code === "string" ? { code } : {}) } };
    }
    if (job.result) return;
    try {
      job.running.worker.postMessage(reply);
    } catch {
      // An answer that cannot be copied to the worker (not plain data) is a DNS failure.
      job.running.worker.postMessage({ type: "dns", query, error: { message: `DNS ${rrtype} ${name}: unusable answer` } } satisfies ToWorker);
    }
  }

  private finish(job: Job, result: AuthResult): void {
    if (job.result) return;
    job.result = result;
    job.running.jobs.delete(job.id);
    if (job.running.jobs.size === 0) job.running.worker.unref();
    job.progress?.();
  }

  /** Until the worker frees a slot, takes bytes or answers; a worker silent for `ms` hangs, and is ended. */
  private waitFor(job: Job, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.retire(job.running);
        void job.running.worker.terminate();
      }, ms);
      job.progress = () => {
        clearTimeout(timer);
        job.progress = undefined;
        resolve();
      };
    });
  }
}
