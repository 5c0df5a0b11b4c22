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
