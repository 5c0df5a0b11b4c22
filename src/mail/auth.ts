import { Resolver } from "node:dns/promises";
import { DEFAULTS } from "../config/defaults.js";
import type { Header } from "../rules/model.js";
import type { Verdicts } from "../ses/verdicts.js";
import { AuthPool } from "./auth-pool.js";

export interface AuthInput {
  /** The message as received, before our headers. */
  message: Buffer | AsyncIterable<Buffer>;
  /** The SMTP client's address. */
  ip: string;
  /** The EHLO/HELO name the client gave. */
  helo: string;
  /** The envelope sender; empty for the null reverse-path, then SPF checks the HELO name. */
  mailFrom: string;
  /** Our host name: the authserv-id of Authentication-Results. */
  hostname: string;
}

export interface AuthResult {
  verdicts: Pick<Verdicts, "spf" | "dkim" | "dmarc" | "dmarcPolicy">;
  /** `Received-SPF` then `Authentication-Results`, unfolded (formatHeaderLine folds if needed). */
  headers: Header[];
}

/**
 * mailauth's resolver: the contract of node:dns/promises `resolve(name, rrtype)`. TXT answers are
 * string[][] (a record's strings, not yet joined), A/AAAA string[], MX {exchange, priority}[];
 * a name or type without records rejects with an error whose `code` is ENOTFOUND or ENODATA. Any
 * other rejection is a temporary DNS failure.
 */
export type DnsResolver = (name: string, rrtype: string) => Promise<unknown>;

export interface AuthOptions {
  /** Answers DNS instead of the system resolver (tests, offline setups). */
  resolver?: DnsResolver;
  /** Total time all DNS queries of one message may wait, counted from the first. Default 3 s. */
  timeoutMs?: number;
  /** The worker threads that run it; default one pool shared by the process. */
  pool?: AuthPool;
  /** Told once, when the budget runs out with a query unanswered (docs/behaviour.md's PROCESSING_FAILED follows). */
  onDnsTimeout?: () => void;
}

// Frozen because every message shares it: a change made for one would leak into the next.
export const AUTH_DISABLED: AuthResult = Object.freeze({
  verdicts: Object.freeze({ spf: "GRAY", dkim: "GRAY", dmarc: "GRAY" }),
  headers: Object.freeze<Header[]>([]) as Header[],
});

function dnsTimeout(name: string, rrtype: string): Error {
  // ETIMEOUT is what mailauth maps to temperror, as for node's own resolver timing out.
  return Object.assign(new Error(`DNS ${rrtype} ${name}: no answer in time`), { code: "ETIMEOUT" });
}

/**
 * One budget for the whole message rather than per query: SPF alone may make ten lookups, and an
 * unreachable DNS must not hold the message for ten timeouts. Once the budget is spent, every
 * further query fails at once. The clock starts at the first query so that reading a large
 * message does not eat into it.
 */
function withDeadline(resolver: DnsResolver, timeoutMs: number, onTimeout: () => void): DnsResolver {
  let deadline: number | undefined;
  let told = false;
  const timedOut = (name: string, rrtype: string): Error => {
    if (!told) {
      told = true;
      onTimeout();
    }
    return dnsTimeout(name, rrtype);
  };
  return async (name, rrtype) => {
    deadline ??= Date.now() + timeoutMs;
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw timedOut(name, rrtype);
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(timedOut(name, rrtype)), remaining);
    });
    try {
      return await Promise.race([resolver(name, rrtype), expired]);
    } finally {
      clearTimeout(timer);
    }
  };
}

let sharedPool: AuthPool | undefined;

/**
 * SPF, DKIM and DMARC for one received message, in an authentication worker thread
 * (src/mail/auth-pool.ts): the message's bytes are streamed there and its DNS queries answered
 * here. Never throws: a DNS failure or timeout gives PROCESSING_FAILED for what needed it; a
 * message that cannot be read at all, or a worker that crashes or hangs, gives PROCESSING_FAILED
 * for all three and no headers.
 *
 * Memory: the message is read once, as a stream when it is one, and never held whole here (see
 * checkMessage for the worker's side). A stream given here is consumed; the caller needs its own
 * copy (the spool) to store the message.
 */
export async function authenticateMessage(input: AuthInput, options: AuthOptions = {}): Promise<AuthResult> {
  // A resolver of our own so that queries abandoned at the deadline can be cancelled, not left to
  // run out their retries in the background.
  let system: Resolver | undefined;
  let resolver = options.resolver;
  if (!resolver) {
    const own = new Resolver();
    system = own;
    resolver = (name, rrtype) => own.resolve(name, rrtype);
  }
  const { message, ...envelope } = input;
  const timeoutMs = options.timeoutMs ?? DEFAULTS.authentication.dnsTimeoutMs;
  const pool = options.pool ?? (sharedPool ??= new AuthPool());
  try {
    return await pool.authenticate(envelope, message, withDeadline(resolver, timeoutMs, options.onDnsTimeout ?? (() => undefined)), timeoutMs);
  } finally {
    system?.cancel();
  }
}
