import type { Readable } from "node:stream";
import { authenticate } from "mailauth";
import type { DKIMVerifyResult, DMARCResult, DNSResolver, SPFResult } from "mailauth";
import type { Header } from "../rules/model.js";
import type { VerdictStatus, Verdicts } from "../ses/verdicts.js";
import { AUTH_FAILED } from "./auth-protocol.js";
import type { AuthInput, AuthResult, DnsResolver } from "./auth.js";

/*
 * mailauth's part of authentication and its results in SES's terms. It runs in an
 * authentication worker thread (src/mail/auth-worker.ts): mailauth's header parsing grows faster
 * than the header block, so it must not run on the thread that serves SMTP.
 */

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

/**
 * mailauth's Received-SPF names only client-ip. RFC 7208 section 9.1 also has the envelope sender
 * and the HELO name, and SES writes both (`envelope-from=...; helo=...;`), bare, so they are added
 * here the way SES writes them. A value that is not made of the characters of a dot-atom and "@"
 * is quoted, as the RFC's grammar requires, so that it cannot end the key-value list early. The
 * null reverse-path has no envelope sender to name.
 */
function withSpfKeys(header: Header, input: AuthEnvelope): Header {
  if (header.name.toLowerCase() !== "received-spf" || /\benvelope-from=/.test(header.value)) return header;
  const pairs = [...(input.mailFrom ? [`envelope-from=${spfKeyValue(input.mailFrom)};`] : []), `helo=${spfKeyValue(input.helo)};`];
  return { name: header.name, value: `${sesComment(header.value, input.hostname)} ${pairs.join(" ")}` };
}

/**
 * mailauth opens its comment with the host name it was given (`pass (<hostname>: domain of ...`);
 * SES opens it with `spfCheck:` (docs/behaviour.md §5). Rewritten here rather than by giving
 * mailauth "spfCheck" as its host name, which SPF's %{r} macro would then expand to.
 */
function sesComment(value: string, hostname: string): string {
  const ours = ` (${hostname}: `;
  const at = value.indexOf(" (");
  return at >= 0 && value.startsWith(ours, at) ? `${value.slice(0, at)} (spfCheck: ${value.slice(at + ours.length)}` : value;
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
function sesHeaders(lines: Header[], dkim: DKIMVerifyResult, dmarc: DMARCResult | false, input: AuthEnvelope): Header[] {
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

/** What the worker knows of the message besides its bytes. */
export type AuthEnvelope = Omit<AuthInput, "message">;

/**
 * SPF, DKIM and DMARC of one message (ARC and BIMI are left out: SES reports neither). Never
 * throws: a message that cannot be read gives AUTH_FAILED.
 *
 * Memory: mailauth keeps the header block and feeds the body through the DKIM body hashes, so the
 * body is never held whole (a message with no empty line after its headers is all header block,
 * and is held).
 */
export async function checkMessage(message: Readable, envelope: AuthEnvelope, resolver: DnsResolver): Promise<AuthResult> {
  try {
    const result = await authenticate(message, {
      ip: envelope.ip,
      helo: envelope.helo,
      sender: envelope.mailFrom,
      mta: envelope.hostname,
      // mailauth's type says every answer is a string array, but it reads MX answers as objects:
      // the real contract is DnsResolver's.
      resolver: resolver as DNSResolver,
      disableArc: true,
      disableBimi: true,
    });
    return {
      verdicts: { spf: spfVerdict(result.spf), dkim: dkimVerdict(result.dkim), ...dmarcVerdict(result.dmarc) },
      headers: sesHeaders(parseHeaderLines(result.headers), result.dkim, result.dmarc, envelope),
    };
  } catch {
    return AUTH_FAILED;
  }
}
