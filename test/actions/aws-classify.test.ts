import { NotFound as S3NotFound, NoSuchBucket, S3ServiceException } from "@aws-sdk/client-s3";
import { KMSAccessDeniedException, LambdaServiceException, ResourceNotFoundException, TooManyRequestsException } from "@aws-sdk/client-lambda";
import { AuthorizationErrorException, InvalidParameterException, NotFoundException, SNSServiceException, ThrottledException } from "@aws-sdk/client-sns";
import { describe, expect, it } from "vitest";
import { classifyAwsError } from "../../src/actions/aws/index.js";
import { ActionError } from "../../src/actions/backend.js";

const meta = (httpStatusCode?: number) => ({ $metadata: httpStatusCode === undefined ? {} : { httpStatusCode } });
const s3 = (name: string, status: number) => new S3ServiceException({ name, $fault: status >= 500 ? "server" : "client", message: name, ...meta(status) });
const sns = (name: string, status: number) => new SNSServiceException({ name, $fault: status >= 500 ? "server" : "client", message: name, ...meta(status) });
const lambda = (name: string, status: number) =>
  new LambdaServiceException({ name, $fault: status >= 500 ? "server" : "client", message: name, ...meta(status) });
const network = (code: string, message: string) => Object.assign(new Error(message), { code });
const named = (name: string, message: string) => Object.assign(new Error(message), { name });

const cases: [string, unknown, "transient" | "permanent"][] = [
  // No credentials in the provider chain: configuration, not a passing condition.
  ["CredentialsProviderError", named("CredentialsProviderError", "Could not load credentials from any providers"), "permanent"],
  // Throttling
  ["SNS Throttled (429)", new ThrottledException({ message: "Rate exceeded", ...meta(429) }), "transient"],
  ["Lambda TooManyRequestsException (429)", new TooManyRequestsException({ message: "Rate exceeded", ...meta(429) }), "transient"],
  ["S3 SlowDown (503)", s3("SlowDown", 503), "transient"],
  ["Throttling (400)", sns("Throttling", 400), "transient"],
  ["ThrottlingException (400)", lambda("ThrottlingException", 400), "transient"],
  ["RequestLimitExceeded (400)", s3("RequestLimitExceeded", 400), "transient"],
  ["ProvisionedThroughputExceeded (400)", s3("ProvisionedThroughputExceeded", 400), "transient"],
  ["KMSThrottlingException (400)", lambda("KMSThrottlingException", 400), "transient"],
  // Server side
  ["S3 InternalError (500)", s3("InternalError", 500), "transient"],
  ["SNS InternalError (500)", sns("InternalErrorException", 500), "transient"],
  ["Lambda ServiceException (500)", lambda("ServiceException", 500), "transient"],
  ["unknown 502", lambda("ResourceNotReadyException", 502), "transient"],
  ["unknown 503 without a name", { $metadata: { httpStatusCode: 503 } }, "transient"],
  // Credentials and clock that the SDK renews
  ["ExpiredToken (400)", s3("ExpiredToken", 400), "transient"],
  ["ExpiredTokenException (403)", sns("ExpiredTokenException", 403), "transient"],
  ["RequestTimeTooSkewed (403)", s3("RequestTimeTooSkewed", 403), "transient"],
  ["S3 RequestTimeout (400)", s3("RequestTimeout", 400), "transient"],
  ["Lambda ResourceConflictException (409)", lambda("ResourceConflictException", 409), "transient"],
  // Network: no HTTP status at all
  ["ECONNREFUSED", network("ECONNREFUSED", "connect ECONNREFUSED 127.0.0.1:9"), "transient"],
  ["ECONNRESET", network("ECONNRESET", "read ECONNRESET"), "transient"],
  ["socket hang up", network("ECONNRESET", "socket hang up"), "transient"],
  ["ETIMEDOUT", network("ETIMEDOUT", "connect ETIMEDOUT"), "transient"],
  ["EPIPE", network("EPIPE", "write EPIPE"), "transient"],
  ["ENOTFOUND", network("ENOTFOUND", "getaddrinfo ENOTFOUND s3.example"), "transient"],
  ["EAI_AGAIN", network("EAI_AGAIN", "getaddrinfo EAI_AGAIN s3.example"), "transient"],
  ["TimeoutError", named("TimeoutError", "Connection timed out after 1000 ms"), "transient"],
  ["AbortError", named("AbortError", "Request aborted"), "transient"],
  ["a string", "something odd", "transient"],
  // Missing resources
  ["S3 NoSuchBucket (404)", new NoSuchBucket({ message: "The specified bucket does not exist", ...meta(404) }), "permanent"],
  ["S3 NotFound (404)", new S3NotFound({ message: "Not Found", ...meta(404) }), "permanent"],
  ["SNS NotFound (404)", new NotFoundException({ message: "Topic does not exist", ...meta(404) }), "permanent"],
  ["Lambda ResourceNotFoundException (404)", new ResourceNotFoundException({ message: "Function not found", ...meta(404) }), "permanent"],
  ["NotFound from an emulator answering 500", sns("NotFound", 500), "permanent"],
  // Not allowed
  ["S3 AccessDenied (403)", s3("AccessDenied", 403), "permanent"],
  ["SNS AuthorizationError (403)", new AuthorizationErrorException({ message: "not authorized", ...meta(403) }), "permanent"],
  ["InvalidAccessKeyId (403)", s3("InvalidAccessKeyId", 403), "permanent"],
  ["SignatureDoesNotMatch (403)", s3("SignatureDoesNotMatch", 403), "permanent"],
  ["InvalidClientTokenId (403)", sns("InvalidClientTokenId", 403), "permanent"],
  // Invalid requests
  ["SNS InvalidParameter (400)", new InvalidParameterException({ message: "Invalid parameter: Subject", ...meta(400) }), "permanent"],
  ["InvalidParameterValue (400)", sns("InvalidParameterValue", 400), "permanent"],
  ["ValidationException (400)", lambda("ValidationException", 400), "permanent"],
  ["InvalidRequestContentException (400)", lambda("InvalidRequestContentException", 400), "permanent"],
  ["RequestEntityTooLarge (413)", lambda("RequestTooLargeException", 413), "permanent"],
  ["unnamed 413", { $metadata: { httpStatusCode: 413 } }, "permanent"],
  // KMS, including Lambda's 502s
  ["Lambda KMSAccessDeniedException (502)", new KMSAccessDeniedException({ message: "KMS access denied", ...meta(502) }), "permanent"],
  ["S3 KMS.DisabledException (400)", s3("KMS.DisabledException", 400), "permanent"],
  ["SNS KMSNotFound (400)", sns("KMSNotFoundException", 400), "permanent"],
  // Other refusals
  ["unknown 400", s3("SomethingNew", 400), "permanent"],
  ["S3 PermanentRedirect (301): bucket in another region", s3("PermanentRedirect", 301), "permanent"],
];

describe("classifyAwsError", () => {
  it.each(cases)("%s → %s", (_label, error, failure) => {
    const classified = classifyAwsError(error);
    expect(classified).toBeInstanceOf(ActionError);
    expect(classified.failure).toBe(failure);
    expect(classified.cause).toBe(error);
  });

  it("names what was attempted, the error, its status and its message", () => {
    const error = new NoSuchBucket({ message: "The specified bucket does not exist", ...meta(404) });
    expect(classifyAwsError(error, "S3 PutObject s3://b/k").message).toBe(
      "S3 PutObject s3://b/k: NoSuchBucket (HTTP 404): The specified bucket does not exist",
    );
    expect(classifyAwsError(network("ECONNREFUSED", "connect ECONNREFUSED 127.0.0.1:9"), "SNS Publish t").message).toBe(
      "SNS Publish t: ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:9",
    );
  });

  it("keeps an ActionError as it is", () => {
    const error = new ActionError("permanent", "already classified");
    expect(classifyAwsError(error)).toBe(error);
  });
});
