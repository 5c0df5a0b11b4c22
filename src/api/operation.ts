import type { ActionTarget } from "../actions/backend.js";
import type { Scope, StateStore } from "../store/store.js";

/**
 * What an SES operation is to the API listener (server.ts): a name, whether its response has an
 * `<XxxResult>` element, and a function from the request's parameters to that element's
 * members. Operations never see HTTP, signatures or XML; the listener never sees SES semantics.
 */

/**
 * An SES error as it goes on the wire (docs/behaviour.md §12): `code` exactly as SES's model
 * spells it (`RuleSetDoesNotExist`, not `...Exception`), the HTTP status, and modeled members
 * that clients read from inside `<Error>` (`Name`, `Bucket`, `Topic`, `FunctionArn`).
 */
export class SesError extends Error {
  override readonly name = "SesError";

  constructor(
    readonly code: string,
    message: string,
    readonly status = 400,
    readonly members: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }

  /** `Sender` for client faults (every modeled SES error), `Receiver` for 5xx. */
  get type(): "Sender" | "Receiver" {
    return this.status >= 500 ? "Receiver" : "Sender";
  }
}

/** A response member: structures, lists (`<member>` items), maps (`<entry><key><value>`) and scalars. */
export type XmlValue = string | number | boolean | Date | XmlValue[] | XmlStruct | XmlMap;
export interface XmlStruct {
  [member: string]: XmlValue | undefined;
}
/** A map-typed member (VerificationAttributes, Policies ...); entries in the order given. */
export class XmlMap {
  constructor(readonly entries: readonly (readonly [string, XmlValue])[]) {}
}

/**
 * The request's parameters, decoded from the Query form (`Rule.Actions.member.1.S3Action.BucketName`).
 * Each accessor names the member by its path in errors (`MissingParameter`, `InvalidParameterValue`).
 */
export interface Params {
  /** The path of this structure in the request, "" at the top. */
  readonly path: string;
  /** Whether the member was sent at all (an empty value counts as sent). */
  has(member: string): boolean;
  string(member: string): string | undefined;
  /** MissingParameter when absent. */
  requiredString(member: string): string;
  /** `true`/`false` (any case); InvalidParameterValue otherwise. */
  boolean(member: string): boolean | undefined;
  integer(member: string): number | undefined;
  /** ISO 8601; InvalidParameterValue otherwise. */
  timestamp(member: string): Date | undefined;
  /** A nested structure, or undefined when none of its members was sent. */
  struct(member: string): Params | undefined;
  /** `X.member.N` in N order; `X=` (empty) is the empty list; undefined when absent. */
  strings(member: string): string[] | undefined;
  structs(member: string): Params[] | undefined;
  /** Member names sent in this structure, for operations that check for unknown members. */
  members(): string[];
}

export interface Caller {
  accessKeyId: string;
  account: string;
  /** The region of the request's credential scope. */
  region: string;
  /** The client's address as the socket saw it. */
  address: string;
}

export interface OperationContext {
  caller: Caller;
  /** The caller's account in the request's region: the state the operation reads and changes. */
  scope: Scope;
  requestId: string;
  now: Date;
  store: StateStore;
  services: ApiServices;
}

/**
 * What operations need beyond the store, given by the daemon (src/daemon/) so that operations
 * stay free of the spool and the back ends' construction. Filled in by the issue's parts.
 */
export interface ApiServices {
  /** `auto`: a new identity is verified at once; `dns`: it stays Pending until its DNS records are found. */
  verification: "auto" | "dns";
  /** Whether a rule action's target exists in the configured back end; null when it cannot tell. */
  targetExists?(target: ActionTarget): Promise<boolean | null>;
  /** Parts that own receiving state in file mode; writes to them are refused. */
  fileOwned?(scope: Scope): { ruleSet: string; rulesFile: string; filtersFile?: string } | null;
  /** SendBounce's message lookup and DSN transport. */
  bounce?: BounceService;
  /** Under DNS verification: emails an address the link that confirms it (served by confirm.ts). */
  confirmation?: { send(scope: Scope, address: string, token: string): Promise<void> };
  /** A failure an operation does not answer with, for the log (a confirmation email that did not go). */
  onError?(event: string, fields: Record<string, unknown>): void;
}

/** A received message as SendBounce needs it. */
export interface BouncedMessage {
  receivedAt: Date;
  /** The envelope sender the DSN goes to; "" for the null sender. */
  mailFrom: string;
  recipients: string[];
  /** The header block as actions saw it, receipt and added headers included. */
  headers: Buffer;
  /** Its Message-ID header's value, for In-Reply-To. */
  originalMessageId?: string;
}

export interface BounceService {
  /** Our host name: the DSN's default Reporting-MTA and its Message-ID's domain. */
  hostname: string;
  /** The message with this SES message ID that the scope received, wherever the spool keeps it; null when unknown or swept. */
  findMessage(scope: Scope, messageId: string): Promise<BouncedMessage | null>;
  /** Sends a DSN from the null sender through the configured transport; resolves once it is handed over. */
  send(dsn: { to: string; raw: Buffer }): Promise<void>;
}

export interface Operation {
  /** The SES action name. */
  name: string;
  /** False for the few operations whose response has no `<XxxResult>` (VerifyEmailAddress ...). */
  hasResult: boolean;
  /** Whether the call changes state (logged and audited as a write). */
  writes: boolean;
  run(params: Params, context: OperationContext): Promise<XmlStruct | undefined>;
}
