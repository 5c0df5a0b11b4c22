import { DEFAULTS } from "../config/defaults.js";
import type { Identities, RuleSet } from "./model.js";
import { isInsideIdentity, rulesMatchingRecipient } from "./recipients.js";

/** SMTP replies of the conversation, docs/behaviour.md §4, kept in one place so every stage quotes them alike. */
export const REPLIES = {
  accessDenied: "554 5.7.1 Access denied",
  sizeExceeded: "552 5.3.4 Message size exceeds fixed maximum message size",
  mailboxUnavailable: "550 5.1.1 Requested action not taken: mailbox unavailable",
  relayingDenied: "550 5.7.1 Relaying denied",
  mustStartTls: "530 5.7.0 Must issue a STARTTLS command first",
  tooManyRecipients: "452 4.5.3 Too many recipients",
  smuggling: "554 5.5.0 Bare line feed or carriage return before end of data",
} as const;

export const DEFAULT_MAX_RECIPIENTS = DEFAULTS.smtp.maxRecipients;

export interface RecipientContext {
  /** The active rule set, or null when none is active. */
  ruleSet: RuleSet | null;
  identities: Identities;
  tls: boolean;
  /** Recipients already accepted in this transaction. */
  acceptedSoFar: number;
  maxRecipients?: number;
}

/** Why a recipient was refused, decided with the reply so that nobody has to read it back out of the text. */
export type RecipientRefusalReason = "mailbox-unavailable" | "relaying-denied" | "tls-required" | "too-many-recipients";

export type RecipientDecision = { accepted: true } | { accepted: false; reason: RecipientRefusalReason; reply: string };

/**
 * The RCPT TO answer for one recipient. Checks run in the order of the docs/behaviour.md table;
 * the recipient limit comes last so that a recipient that would be refused for good is
 * told so (5xx), not invited to retry (4xx).
 */
export function decideRecipient(recipient: string, context: RecipientContext): RecipientDecision {
  const { ruleSet, identities } = context;
  if (!ruleSet) return { accepted: false, reason: "mailbox-unavailable", reply: REPLIES.mailboxUnavailable };
  if (!isInsideIdentity(recipient, identities)) return { accepted: false, reason: "relaying-denied", reply: REPLIES.relayingDenied };
  let matched = false;
  let requiresTls = false;
  for (const ruleIndex of rulesMatchingRecipient(ruleSet.rules, recipient, identities)) {
    const rule = ruleSet.rules[ruleIndex]!;
    if (!rule.enabled) continue;
    matched = true;
    if (rule.tlsPolicy === "Require") requiresTls = true;
  }
  if (!matched) return { accepted: false, reason: "mailbox-unavailable", reply: REPLIES.mailboxUnavailable };
  if (requiresTls && !context.tls) return { accepted: false, reason: "tls-required", reply: REPLIES.mustStartTls };
  if (context.acceptedSoFar >= (context.maxRecipients ?? DEFAULT_MAX_RECIPIENTS)) {
    return { accepted: false, reason: "too-many-recipients", reply: REPLIES.tooManyRecipients };
  }
  return { accepted: true };
}

export interface EnvelopeDecision {
  accepted: string[];
  refused: { recipient: string; reply: string }[];
}

/** Runs a whole envelope's RCPT TO commands in order, as the SMTP conversation would. */
export function decideRecipients(
  recipients: readonly string[],
  context: Omit<RecipientContext, "acceptedSoFar">,
): EnvelopeDecision {
  const result: EnvelopeDecision = { accepted: [], refused: [] };
  for (const recipient of recipients) {
    const decision = decideRecipient(recipient, { ...context, acceptedSoFar: result.accepted.length });
    if (decision.accepted) result.accepted.push(recipient);
    else result.refused.push({ recipient, reply: decision.reply });
  }
  return result;
}
