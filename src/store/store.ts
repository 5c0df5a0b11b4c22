import type { ReceiptState } from "../rules/store.js";

/**
 * The durable state behind the SES API, and what the MX follows. Everything here is an
 * interface: the file store (file-store.ts) implements it today, PostgreSQL will next, so that
 * several MX nodes share one state. Nothing outside src/store/ may assume the state lives in
 * this process: read through `read`, change through `update`, learn of changes by `subscribe`.
 */

/** SES keeps state per account and region; so does every method here. */
export interface Scope {
  account: string;
  region: string;
}

export type VerificationStatus = "Pending" | "Success" | "Failed" | "TemporaryFailure" | "NotStarted";

export interface IdentityRecord {
  /** Canonical: a domain in lower-case A-labels, or an address whose domain is so. */
  identity: string;
  type: "EmailAddress" | "Domain";
  /** ISO 8601 with Z. */
  createdAt: string;
  verification: {
    status: VerificationStatus;
    /** Domains only: the value of the `_amazonses.<domain>` TXT record. */
    token?: string;
    /** Addresses under DNS verification only: SHA-256 (hex) of the token in the emailed confirmation link. */
    confirmation?: string;
    /** When the status last changed, ISO 8601 with Z. */
    since: string;
  };
  /** `since`: when the status last changed (absent in records written before it was kept: the creation time). */
  dkim: { enabled: boolean; status: VerificationStatus; tokens: string[]; since?: string };
  mailFrom: {
    domain?: string;
    status?: "Pending" | "Success" | "Failed" | "TemporaryFailure";
    since?: string;
    behaviorOnMxFailure: "UseDefaultValue" | "RejectMessage";
  };
  notifications: {
    bounceTopic?: string;
    complaintTopic?: string;
    deliveryTopic?: string;
    forwardingEnabled: boolean;
    headersInBounce: boolean;
    headersInComplaint: boolean;
    headersInDelivery: boolean;
  };
  /** Policy name to its document, compacted JSON, in the order they were first put. */
  policies: Readonly<Record<string, string>>;
}

/** One account's state in one region. Frozen: a change builds a new one. */
export interface ScopeState {
  receipt: ReceiptState;
  /** By canonical identity. */
  identities: ReadonlyMap<string, IdentityRecord>;
  /** UpdateAccountSendingEnabled; while false no DSN leaves (docs/behaviour.md §8). */
  sendingEnabled: boolean;
  /** 0 for a scope never written; one more for every change. */
  revision: number;
}

/** Who made a change, and through what: one audit record per change. */
export interface ChangeOrigin {
  /** `api`: an SES API call; `file`: a rule or filter file imported; `import`: `receiptd state import`; `verifier`: DNS verification. */
  via: "api" | "file" | "import" | "verifier";
  /** The SES operation (CreateReceiptRule ...), or what the origin did. */
  operation: string;
  accessKeyId?: string;
  requestId?: string;
  /** The caller's address. */
  address?: string;
  /** What was changed, as the caller named it (RuleSetName, Rule.Name, Identity ...); small values only. */
  target?: Readonly<Record<string, string>>;
}

export interface AuditRecord extends ChangeOrigin {
  /** Orders every change of the store. */
  seq: number;
  /** ISO 8601 with Z. */
  time: string;
  scope: Scope;
  /** The scope's revision after the change. */
  revision: number;
}

/** What a change function returns: the new state (or the same object: nothing changed, nothing written) and the caller's result. */
export interface Change<T> {
  state: ScopeState;
  result: T;
}

export interface StateStore {
  /** A consistent state of one scope; a scope never written reads as the empty state. */
  read(scope: Scope): Promise<ScopeState>;
  /**
   * Runs `change` on the newest state of the scope, serialised with every other update of that
   * scope (in every process and node sharing the store). When it returns a different state, that
   * state and one audit record are durable before the promise resolves. When it throws, nothing
   * is changed and the promise rejects with what it threw. `change` must be pure: it may run
   * again if the store has to retry.
   */
  update<T>(scope: Scope, origin: ChangeOrigin, change: (state: ScopeState) => Change<T>): Promise<T>;
  /** Called after every durable change, in `seq` order; returns the unsubscribe function. */
  subscribe(listener: (scope: Scope, state: ScopeState, record: AuditRecord) => void): () => void;
  /** Audit records, oldest first, filtered; `limit` keeps the newest ones. */
  audit(query?: { scope?: Scope; since?: Date; limit?: number }): Promise<AuditRecord[]>;
  /** Every scope that has been written. */
  scopes(): Promise<Scope[]>;
  close(): Promise<void>;
}
