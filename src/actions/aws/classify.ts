import { ActionError } from "../backend.js";

/**
 * Error names that mean "try again later" even though AWS answers some of them with a 4xx
 * status (throttling is 400 in several protocols).
 */
const TRANSIENT_NAMES = new Set([
  // Throttling, under every name the services use.
  "Throttling",
  "ThrottlingException",
  "Throttled",
  "ThrottledException",
  "TooManyRequestsException",
  "SlowDown",
  "RequestLimitExceeded",
  "RequestThrottled",
  "RequestThrottledException",
  "ProvisionedThroughputExceeded",
  "ProvisionedThroughputExceededException",
  "BandwidthLimitExceeded",
  "EC2ThrottledException",
  "KMSThrottlingException",
  // Temporary credentials ran out: the default provider chain fetches new ones (instance
  // role, SSO, web identity) on the next attempt. Static expired credentials never recover,
  // but then the retry window ends and the message is dead-lettered all the same.
  "ExpiredToken",
  "ExpiredTokenException",
  // The request was slow or the clock was off; the SDK corrects its clock skew on the next
  // attempt.
  "RequestTimeout",
  "RequestTimeoutException",
  "RequestTimeTooSkewed",
  "RequestExpired",
  // Lambda: the function is being created or updated. S3: a conflicting bucket operation is
  // in progress. Both 409, both pass.
  "ResourceConflictException",
  "OperationAborted",
]);

/**
 * Error names that no retry will cure: the resource is missing, we may not use it, or the
 * request itself is wrong. Checked before the HTTP status because emulators do not always
 * answer them with a 4xx.
 */
const PERMANENT_NAMES = new Set([
  "NoSuchBucket",
  "NotFound",
  "NotFoundException",
  "ResourceNotFoundException",
  "AccessDenied",
  "AccessDeniedException",
  "AuthorizationError",
  "AuthorizationErrorException",
  "InvalidAccessKeyId",
  "InvalidClientTokenId",
  "UnrecognizedClientException",
  "SignatureDoesNotMatch",
  "InvalidParameter",
  "InvalidParameterException",
  "InvalidParameterValue",
  "InvalidParameterValueException",
  "ValidationError",
  "ValidationException",
  "InvalidRequestContentException",
  "RequestEntityTooLarge",
  "RequestEntityTooLargeException",
  "RequestTooLargeException",
  "EntityTooLarge",
]);

interface AwsErrorFields {
  name?: unknown;
  Code?: unknown;
  code?: unknown;
  message?: unknown;
  $metadata?: { httpStatusCode?: unknown };
  $retryable?: unknown;
}

/**
 * Classifies an AWS SDK (or network) error as docs/behaviour.md §8 needs it.
 *
 * `context` names what was attempted (e.g. `SNS Publish arn:aws:sns:...`) and starts the
 * message, which ends up in the message's trace and dead-letter record.
 *
 * Order: named transient errors (throttling, expired credentials); KMS errors, which are
 * permanent even when Lambda answers them with 502; named permanent errors; then by status:
 * 5xx, 429 and 408 transient, other 3xx/4xx permanent (an unknown refusal is not cured by
 * waiting; a 301 means the bucket is in another region). An error without any HTTP status
 * never got a verdict from the service (connection refused or reset, DNS failure, socket
 * hang up, TimeoutError, AbortError) and is transient.
 */
export function classifyAwsError(error: unknown, context = "AWS request"): ActionError {
  if (error instanceof ActionError) return error;
  const fields: AwsErrorFields = typeof error === "object" && error !== null ? error : {};
  const names = [fields.name, fields.Code, fields.code].filter((n): n is string => typeof n === "string" && n !== "");
  const status = typeof fields.$metadata?.httpStatusCode === "number" ? fields.$metadata.httpStatusCode : undefined;
  const message = describe(error, names, status, context);
  const failure = (kind: "transient" | "permanent") => new ActionError(kind, message, { cause: error });

  // No credentials anywhere in the provider chain is a configuration error that waiting does
  // not cure (the SDK's CredentialsProviderError carries no status, so it would pass as network).
  if (names.includes("CredentialsProviderError")) {
    return new ActionError("permanent", `${message} (configuration: give the AWS back end credentials)`, { cause: error });
  }
  if (names.some((n) => TRANSIENT_NAMES.has(n)) || fields.$retryable !== undefined) return failure("transient");
  if (names.some((n) => /^KMS/.test(n))) return failure("permanent");
  if (names.some((n) => PERMANENT_NAMES.has(n))) return failure("permanent");
  if (status === undefined) return failure("transient");
  if (status >= 500 || status === 429 || status === 408) return failure("transient");
  if (status >= 300) return failure("permanent");
  return failure("transient");
}

function describe(error: unknown, names: string[], status: number | undefined, context: string): string {
  // A plain Error's name says nothing; its errno code (ECONNREFUSED) does.
  const name = names.find((n) => n !== "Error") ?? names[0] ?? "Error";
  const text = error instanceof Error ? error.message : String(error);
  return `${context}: ${name}${status === undefined ? "" : ` (HTTP ${status})`}: ${text || "no message"}`;
}
