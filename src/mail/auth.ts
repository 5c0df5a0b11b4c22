import { Resolver } from "node:dns/promises";
import { Readable } from "node:stream";
import { authenticate } from "mailauth";
import type { DKIMVerifyResult, DMARCResult, DNSResolver, SPFResult } from "mailauth";
import { DEFAULTS } from "../config/defaults.js";
import type { Header } from "../rules/model.js";
import type { VerdictStatus, Verdicts } from "../ses/verdicts.js";

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
}

// Frozen because every message shares it: a change made for one would leak into the next.
export const AUTH_DISABLED: AuthResult = Object.freeze({
  verdicts: Object.freeze({ spf: "GRAY", dkim: "GRAY", dmarc: "GRAY" }),
  headers: Object.freeze<Header[]>([]) as Header[],
});

/*
 * mailauth results to SES verdicts. SES documents GRAY as "no SPF policy", "not DKIM-signed" and
 * "DMARC failed but the domain has no policy or p=none", and PROCESSING_FAILED as "DNS queries are
 * failing or the DKIM-Signature is not formatted properly".
 * - SPF: pass → PASS; fail, softfail → FAIL; neutral, none → GRAY;
 *   temperror, permerror → PROCESSING_FAILED.
 * - DKIM: any signature passes → PASS; else any temperror → PROCESSING_FAILED (it might have passed);
 *   else any verified-and-failed signature (bad signature, body hash mismatch, missing or weak key,
 *   expired; mailauth calls most of these neutral) → FAIL; else DKIM-Signature fields that mailauth
 *   could not even parse → PROCESSING_FAILED; no DKIM-Signature → GRAY.
 * - DMARC: pass → PASS; no record → GRAY; fail → FAIL with dmarcPolicy the policy that applies (sp=
 *   when the record found is the organizational domain's and has one, else p=), except that p=none
 *   (or a missing or unknown p=) gives GRAY with dmarcPolicy "none", as SES documents; pct= is not
 *   applied. temperror, and a message without exactly one From address (DMARC cannot be
 *   evaluated; mailauth then skips it) → PROCESSING_FAILED.
 */
function spfVerdict(spf: SPFResult | false): VerdictStatus {
  switch (spf && spf.status.result) {
    case "pass":
      return "PASS";
    case "fail":
    case "softfail":
      return "FAIL";
    case "neutral":
    case "none":
      return "GRAY";
    default:
      return "PROCESSING_FAILED";
  }
}

function dkimVerdict(dkim: DKIMVerifyResult): VerdictStatus {
  // mailauth reports an unsigned message as one result "none", and leaves out unparsable signatures.
  const evaluated = dkim.results.filter((r) => r.status.result !== "none");
  if (evaluated.some((r) => r.status.result === "pass")) return "PASS";
  const temporary = evaluated.some((r) => r.status.result === "temperror" || r.status.result === "temperr");
  if (temporary) return "PROCESSING_FAILED";
  if (evaluated.length > 0) return "FAIL";
  const signed = dkim.headers?.parsed.some((h) => h.key === "dkim-signature") ?? false;
  return signed ? "PROCESSING_FAILED" : "GRAY";
}

function dmarcVerdict(dmarc: DMARCResult | false): Pick<Verdicts, "dmarc" | "dmarcPolicy"> {
  if (!dmarc) return { dmarc: "PROCESSING_FAILED" };
  switch (dmarc.status.result) {
    case "pass":
      return { dmarc: "PASS" };
    case "none":
      return { dmarc: "GRAY" };
    case "fail": {
      // Typed string, but undefined when the record has no p=.
      const policy = (dmarc.policy ?? "").trim().toLowerCase();
      if (policy === "quarantine" || policy === "reject") return { dmarc: "FAIL", dmarcPolicy: policy };
      return { dmarc: "GRAY", dmarcPolicy: "none" };
    }
    default:
      return { dmarc: "PROCESSING_FAILED" };
  }
}

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
function withDeadline(resolver: DnsResolver, timeoutMs: number): DnsResolver {
  let deadline: number | undefined;
  return async (name, rrtype) => {
    deadline ??= Date.now() + timeoutMs;
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw dnsTimeout(name, rrtype);
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(dnsTimeout(name, rrtype)), remaining);
    });
    try {
      return await Promise.race([resolver(name, rrtype), expired]);
    } finally {
      clearTimeout(timer);
    }
  };
}

/**
 * mailauth's Received-SPF names only client-ip. RFC 7208 section 9.1 also has the envelope sender
 * and the HELO name, and SES writes both (`envelope-from=...; helo=...;`), bare, so they are added
 * here the way SES writes them. A value that is not made of the characters of a dot-atom and "@"
 * is quoted, as the RFC's grammar requires, so that it cannot end the key-value list early. The
 * null reverse-path has no envelope sender to name.
 */
function withSpfKeys(header: Header, input: AuthInput): Header {
  if (header.name.toLowerCase() !== "received-spf" || /\benvelope-from=/.test(header.value)) return header;
  const pairs = [...(input.mailFrom ? [`envelope-from=${spfKeyValue(input.mailFrom)};`] : []), `helo=${spfKeyValue(input.helo)};`];
  return { name: header.name, value: `${header.value} ${pairs.join(" ")}` };
}

function spfKeyValue(value: string): string {
  return /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@-]+$/.test(value) ? value : `"${value.replace(/[\\"]/g, "\\$&")}"`;
}

/**
 * Received-SPF as mailauth writes it with SES's keys added, and Authentication-Results as SES
 * writes it (docs/behaviour.md §5) rather than as mailauth does (smtp.mailfrom=, header.s=,
 * header.b=, policy comments): `<hostname>; spf=<the Received-SPF value> dkim=<result>
 * header.i=<identity>; dmarc=<result> header.from=<domain>;`. One dkim= per signature checked,
 * none for an unsigned message; no dmarc= when DMARC could not be evaluated.
 */
function sesHeaders(lines: Header[], dkim: DKIMVerifyResult, dmarc: DMARCResult | false, input: AuthInput): Header[] {
  const receivedSpf = lines.filter((h) => h.name.toLowerCase() === "received-spf").map((h) => withSpfKeys(h, input));
  const methods = receivedSpf.map((h) => `spf=${h.value}`);
  for (const signature of dkim.results) {
    if (signature.status.result === "none") continue;
    const identity = (signature.status.header as { i?: unknown } | undefined)?.i;
    methods.push(`dkim=${resultKeyword(signature.status.result)} header.i=${typeof identity === "string" ? identity : `@${signature.signingDomain}`};`);
  }
  if (dmarc) {
    const from = (dmarc.status.header as { from?: unknown } | undefined)?.from;
    methods.push(`dmarc=${resultKeyword(dmarc.status.result)} header.from=${typeof from === "string" ? from : dmarc.domain};`);
  }
  // The signature's own i= could carry a folded line end; a header value must not.
  const value = [`${input.hostname};`, ...methods].join(" ").replace(/[\r\n]/g, "");
  return [...receivedSpf, { name: "Authentication-Results", value }];
}

/** RFC 8601's keyword; mailauth spells one of them its own way. */
function resultKeyword(result: string): string {
  return result === "temperr" ? "temperror" : result;
}

/** `Name: value` lines, folded, CRLF-separated, as mailauth returns them. */
function parseHeaderLines(block: string): Header[] {
  return block
    .split(/\r\n(?![ \t])/)
    .filter((line) => line !== "")
    .map((line) => {
      const colon = line.indexOf(":");
      return { name: line.slice(0, colon), value: line.slice(colon + 1).replace(/[\r\n]/g, "").trimStart() };
    });
}

/**
 * SPF, DKIM and DMARC for one received message (ARC and BIMI are left out: SES reports neither).
 * Never throws: a DNS failure or timeout gives PROCESSING_FAILED for what needed it, and a message
 * that cannot be read at all gives PROCESSING_FAILED for all three and no headers.
 *
 * Memory: the message is read once, as a stream when it is one; mailauth keeps the header block and
 * feeds the body through the DKIM body hashes, so the body is never held whole (a message with no
 * empty line after its headers is all header block, and is held). A stream given here is
 * consumed; the caller needs its own copy (the spool) to store the message.
 *
 * Time: mailauth's header parsing grows faster than the header block and runs on the caller's
 * thread, so a header block must be bounded before it gets here (the daemon's DATA does it:
 * `src/smtp/scanner.ts`).
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
  try {
    const message = Buffer.isBuffer(input.message) ? input.message : Readable.from(input.message);
    const result = await authenticate(message, {
      ip: input.ip,
      helo: input.helo,
      sender: input.mailFrom,
      mta: input.hostname,
      // mailauth's type says every answer is a string array, but it reads MX answers as objects:
      // the real contract is DnsResolver's.
      resolver: withDeadline(resolver, options.timeoutMs ?? DEFAULTS.authentication.dnsTimeoutMs) as DNSResolver,
      disableArc: true,
      disableBimi: true,
    });
    return {
      verdicts: { spf: spfVerdict(result.spf), dkim: dkimVerdict(result.dkim), ...dmarcVerdict(result.dmarc) },
      headers: sesHeaders(parseHeaderLines(result.headers), result.dkim, result.dmarc, input),
    };
  } catch {
    const failed = "PROCESSING_FAILED";
    return { verdicts: { spf: failed, dkim: failed, dmarc: failed }, headers: [] };
  } finally {
    system?.cancel();
  }
}
