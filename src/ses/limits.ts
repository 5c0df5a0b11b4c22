import type { ActionType } from "../rules/model.js";

/** SES's per-action message size limits (docs/behaviour.md §6), kept in strict mode. */
export const SNS_ACTION_LIMIT_BYTES = 150 * 1024;
export const S3_ACTION_LIMIT_BYTES = 40 * 1024 * 1024;

const LIMITS: Partial<Record<ActionType, { bytes: number; what: string }>> = {
  SNS: { bytes: SNS_ACTION_LIMIT_BYTES, what: "SNS action" },
  S3: { bytes: S3_ACTION_LIMIT_BYTES, what: "S3 action" },
};

/** Why an action cannot take a message of this size, or null when it can. */
export function sizeLimitError(type: ActionType, size: number): string | null {
  const limit = LIMITS[type];
  if (!limit || size <= limit.bytes) return null;
  return `message of ${size} bytes exceeds the ${limit.what} limit of ${limit.bytes} bytes`;
}

/**
 * SES's receipt rule and filter limits (docs/behaviour.md §9), for the validator of a rule set
 * document and for the receipt API store, which answers LimitExceeded instead.
 */
export const RULE_SET_LIMITS = Object.freeze({
  ruleSets: 40,
  rulesPerSet: 200,
  actionsPerRule: 10,
  recipientsPerRule: 100,
  filters: 100,
});
