import type { Header } from "../rules/model.js";
import type { AuthEnvelope } from "./auth-check.js";
import type { AuthResult } from "./auth.js";

/*
 * What the daemon's thread and an authentication worker (src/mail/auth-worker.ts) say to each
 * other. Many messages share one worker, so every message names its job.
 */

export type ToWorker =
  | { type: "start"; job: number; envelope: AuthEnvelope }
  /** The next bytes of the message, in an ArrayBuffer of their own, transferred. */
  | { type: "chunk"; job: number; bytes: Uint8Array }
  | { type: "end"; job: number }
  /** The message could not be read to its end; the job's result is no longer wanted. */
  | { type: "abort"; job: number }
  | { type: "dns"; query: number; answer?: unknown; error?: { message: string; code?: string } };

export type FromWorker =
  /** mailauth took this many bytes of the job's message: the sender may send that many more. */
  | { type: "taken"; job: number; bytes: number }
  | { type: "dns"; job: number; query: number; name: string; rrtype: string }
  | { type: "result"; job: number; result: AuthResult };

/** A message that could not be authenticated at all: read failure, worker crash or hang. */
export const AUTH_FAILED: AuthResult = Object.freeze({
  verdicts: Object.freeze({ spf: "PROCESSING_FAILED", dkim: "PROCESSING_FAILED", dmarc: "PROCESSING_FAILED" }),
  headers: Object.freeze<Header[]>([]) as Header[],
});
