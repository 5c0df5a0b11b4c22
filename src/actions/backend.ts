/**
 * The primitives an action back end provides. Everything SES-specific (event shapes, object
 * keys, size limits, topic notifications, DSNs, the null-sender rule) is done once above
 * them, in the SES executor, so that every back end produces the same events.
 *
 * Each primitive resolves when its effect is durable, and throws ActionError (or any error,
 * taken as transient) when it is not.
 */
export interface ActionBackend {
  putObject(request: PutObjectRequest): Promise<Record<string, unknown>>;
  /** Publishes one SNS message; resolves with what the service returned (e.g. its MessageId). */
  publish(request: PublishRequest): Promise<Record<string, unknown>>;
  /** Invokes a function; for RequestResponse, resolves with its parsed JSON result (or null). */
  invoke(request: InvokeRequest): Promise<{ result: unknown; detail: Record<string, unknown> }>;
  /** Sends a DSN from the null sender to one address. */
  sendDsn(request: SendDsnRequest): Promise<Record<string, unknown>>;
  /** Hands the message to the mailbox service of a WorkMail organization. */
  deliverToMailbox(request: MailboxRequest): Promise<Record<string, unknown>>;
  /**
   * Whether an action's target exists, for the SES API to check a rule as SES does: true, false,
   * or null when this back end cannot tell (no permission to look, the service unreachable).
   */
  targetExists(target: ActionTarget): Promise<boolean | null>;
}

export type ActionTarget = { service: "S3"; bucket: string } | { service: "SNS"; topicArn: string } | { service: "Lambda"; functionArn: string };

export interface PutObjectRequest {
  bucket: string;
  key: string;
  body: AsyncIterable<Buffer>;
  /** Exact length of body, known up front so that nothing is buffered to learn it. */
  contentLength: number;
  kmsKeyArn?: string;
}

export interface PublishRequest {
  topicArn: string;
  subject: string;
  /** The notification JSON, as SES would publish it. */
  message: string;
}

export interface InvokeRequest {
  functionArn: string;
  invocationType: "Event" | "RequestResponse";
  /** The SES Lambda event JSON. */
  payload: string;
}

export interface SendDsnRequest {
  /** The whole DSN message (RFC 3464). */
  raw: Buffer;
  to: string;
}

export interface MailboxRequest {
  organizationArn: string;
  mailFrom: string;
  recipients: string[];
  body: AsyncIterable<Buffer>;
  contentLength: number;
}

/** A back end failure, classified as docs/behaviour.md §8 needs it. */
export class ActionError extends Error {
  constructor(
    readonly failure: "transient" | "permanent",
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "ActionError";
  }
}
