import type { Identities, RuleSet } from "../rules/model.js";
import { rulesMatchingRecipient } from "../rules/recipients.js";

/** SES's verdict statuses; DISABLED only for spam and virus, when no matched rule scans. */
export type VerdictStatus = "PASS" | "FAIL" | "GRAY" | "PROCESSING_FAILED" | "DISABLED";

export interface Verdicts {
  spam: VerdictStatus;
  virus: VerdictStatus;
  spf: VerdictStatus;
  dkim: VerdictStatus;
  dmarc: VerdictStatus;
  /** Only when DMARC fails: the sending domain's published policy. */
  dmarcPolicy?: "none" | "quarantine" | "reject";
}

/**
 * The spam and virus verdict a message is stored with: GRAY (not determined yet) when an enabled
 * rule with ScanEnabled matches it, so that processing scans it (src/scan/), and DISABLED, as
 * SES reports it, when no scanning rule does.
 */
export function scanVerdict(ruleSet: RuleSet, identities: Identities, recipients: readonly string[]): "GRAY" | "DISABLED" {
  const { rules } = ruleSet;
  const scans = recipients.some((recipient) =>
    rulesMatchingRecipient(rules, recipient, identities).some((i) => rules[i]!.enabled && rules[i]!.scanEnabled),
  );
  return scans ? "GRAY" : "DISABLED";
}
