import type { Header } from "../rules/model.js";
import type { AuthEnvelope } from "./auth-check.js";
import type { AuthResult } from "./auth.js";

/*
 * What the daemon's thread and an authentication worker (src/mail/auth-worker.ts) say to each
 * other. Many messages share one worker, so every message names its job.
 */

export type ToWorker =
  | { type: "start"; job: number; envelope: AuthEnvelope }
  /** The next `length` bytes of the message are in this slot of the shared buffer. */
  | { type: "chunk"; job: number; slot: number; length: number }
  | { type: "end"; job: number }
  /** The message could not be read to its end; the job's result is no longer wanted. */
  | { type: "abort"; job: number }
  | { type: "dns"; query: number; answer?: unknown; error?: { message: string; code?: string } };

/**
 * The message's bytes cross in a buffer shared with the worker, cut in slots: the worker copies
 * a slot out as soon as it is told of it and frees it. Transferring a fresh ArrayBuffer per chunk
 * instead left each one's memory to the daemon thread's next collection: measured, a 40 MB and a
 * 120 MB message grew the process by 44 and 108 MB that way, and both by 25 MB through the slots.
 */
export const SLOT_BYTES = 64 * 1024;
export const SLOTS = 32;

export type FromWorker =
  /** This slot's bytes are copied out: it can take the next ones. */
  | { type: "free"; slot: number }
  /** mailauth took this many bytes of the job's message: the sender may send that many more. */
  | { type: "taken"; job: number; bytes: number }
  | { type: "dns"; job: number; query: number; name: string; rrtype: string }
  | { type: "result"; job: number; result: AuthResult };

/** A message that could not be authenticated at all: read failure, worker crash or hang. */
export const AUTH_FAILED: AuthResult = Object.freeze({
  verdicts: Object.freeze({ spf: "PROCESSING_FAILED", dkim: "PROCESSING_FAILED", dmarc: "PROCESSING_FAILED" }),
  headers: Object.freeze<Header[]>([]) as Header[],
});
