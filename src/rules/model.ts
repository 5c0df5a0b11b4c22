import type {
  AddHeaderAction,
  BounceAction,
  ConnectAction,
  LambdaAction,
  ReceiptAction,
  S3Action,
  SNSAction,
  StopAction,
  WorkmailAction,
} from "@aws-sdk/client-ses";

/**
 * The validated, in-memory form of a receipt rule set. The SES JSON shapes are kept for
 * action parameters (so traces and events can echo them exactly as the user wrote them);
 * everything the evaluator decides on is normalised here once, at load time.
 */
export interface RuleSet {
  name: string;
  createdTimestamp?: string;
  rules: Rule[];
}

export interface Rule {
  name: string;
  enabled: boolean;
  tlsPolicy: "Require" | "Optional";
  /** As written in the rule; empty when the rule has no Recipients (matches every verified recipient). */
  recipients: string[];
  scanEnabled: boolean;
  actions: RuleAction[];
}

export type ActionType = "S3" | "SNS" | "Lambda" | "Bounce" | "AddHeader" | "Stop" | "WorkMail" | "Connect";

export interface ActionParamsByType {
  S3: S3Action;
  SNS: SNSAction;
  Lambda: LambdaAction;
  Bounce: BounceAction;
  AddHeader: AddHeaderAction;
  Stop: StopAction;
  WorkMail: WorkmailAction;
  Connect: ConnectAction;
}

/** One action of a rule: its type and its parameters exactly as in the SES JSON. */
export type RuleAction = {
  [T in ActionType]: { type: T; params: ActionParamsByType[T] };
}[ActionType];

/** The key each action type has inside an SES `ReceiptAction` object. */
export const ACTION_KEYS = {
  S3: "S3Action",
  SNS: "SNSAction",
  Lambda: "LambdaAction",
  Bounce: "BounceAction",
  AddHeader: "AddHeaderAction",
  Stop: "StopAction",
  WorkMail: "WorkmailAction",
  Connect: "ConnectAction",
} as const satisfies Record<ActionType, keyof ReceiptAction>;

export interface IpFilter {
  name: string;
  policy: "Allow" | "Block";
  cidr: string;
}

/**
 * Verified identities: whole addresses and domains, lower-cased. A domain covers its
 * subdomains too (docs/behaviour.md §2).
 */
export interface Identities {
  addresses: ReadonlySet<string>;
  domains: ReadonlySet<string>;
}

export interface Envelope {
  mailFrom: string;
  recipients: string[];
}

export interface Header {
  name: string;
  value: string;
}
