// The library surface of receiptd: load and check rule sets, decide what the SMTP
// conversation answers, evaluate messages through an action executor, replay files.
export type {
  ActionParamsByType,
  ActionType,
  Envelope,
  Header,
  Identities,
  IpFilter,
  Rule,
  RuleAction,
  RuleSet,
} from "./rules/model.js";
export { RuleSetValidationError, parseFilters, parseFiltersText, parseRuleSet, parseRuleSetText } from "./rules/parse.js";
export type { Parsed, ValidationIssue } from "./rules/parse.js";
export { loadFiltersFile, loadRuleSetFile } from "./config/rule-files.js";
export {
  entryMatches,
  identitiesFrom,
  identitiesOfRules,
  isInsideIdentity,
  rulesMatchingRecipient,
} from "./rules/recipients.js";
export { compileFilters, decideIp } from "./rules/filters.js";
export type { CompiledFilters, IpFilterDecision } from "./rules/filters.js";
export { DEFAULT_MAX_RECIPIENTS, REPLIES, decideRecipient, decideRecipients } from "./rules/recipient-policy.js";
export type { EnvelopeDecision, RecipientContext, RecipientDecision } from "./rules/recipient-policy.js";
export { evaluate } from "./rules/evaluate.js";
export type { ActionTrace, EvaluationInput, EvaluationTrace, RuleStop, RuleTrace } from "./rules/evaluate.js";
export type { ActionCall, ActionExecutor, ActionOutcome } from "./rules/executor.js";
export { recordingExecutor } from "./actions/record.js";
export { S3_ACTION_LIMIT_BYTES, SNS_ACTION_LIMIT_BYTES } from "./ses/limits.js";
export type { RecordedCall, RecordingExecutor, RecordingOptions } from "./actions/record.js";
export * from "./mail/index.js";
export { messageFiles, replayFiles, replayHead, replayMessage } from "./replay/replay.js";
export type { ReplayOutcome, ReplayResult, ReplaySettings } from "./replay/replay.js";
export { replayJson, replayText } from "./replay/format.js";
export {
  EMPTY_STATE,
  ReceiptApiError,
  activeRuleSet,
  cloneReceiptRuleSet,
  createReceiptFilter,
  createReceiptRule,
  createReceiptRuleSet,
  deleteReceiptFilter,
  deleteReceiptRule,
  deleteReceiptRuleSet,
  describeReceiptRule,
  describeReceiptRuleSet,
  reorderReceiptRuleSet,
  setActiveReceiptRuleSet,
  setReceiptRulePosition,
  toDescribeJson,
  toReceiptRuleJson,
  updateReceiptRule,
} from "./rules/store.js";
export type { ReceiptErrorCode, ReceiptState, RuleSetJson } from "./rules/store.js";
export { ConfigError, defaultConfig, loadConfigFile, parseConfig } from "./config/config.js";
export type { BackendChoice, ReceiptdConfig, ServeConfig } from "./config/config.js";
export { backendFromConfig, executorFromConfig } from "./actions/compose.js";
export { sesExecutor } from "./actions/ses-executor.js";
export type { SesExecutorOptions } from "./actions/ses-executor.js";
export { ActionError } from "./actions/backend.js";
export type { ActionBackend } from "./actions/backend.js";
export { bufferMessage, fileMessage } from "./actions/message.js";
export type { ReceivedMessage } from "./actions/message.js";
export { startDaemon } from "./daemon/daemon.js";
export type { Daemon, DaemonOptions } from "./daemon/daemon.js";
export * from "./ses/index.js";
