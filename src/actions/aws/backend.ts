import { Readable } from "node:stream";
import { GetFunctionCommand, InvokeCommand, LambdaClient } from "@aws-sdk/client-lambda";
import { HeadBucketCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { GetTopicAttributesCommand, PublishCommand, SNSClient } from "@aws-sdk/client-sns";
import { DEFAULTS } from "../../config/defaults.js";
import { ActionError } from "../backend.js";
import type { ActionBackend, MailboxRequest, SendDsnRequest } from "../backend.js";
import { classifyAwsError } from "./classify.js";

export interface AwsServiceOptions {
  /** Wins over the region in a topic or function ARN (emulators often ignore regions). */
  region?: string;
  endpoint?: string;
  /** S3 only: `http://host/bucket/key` addressing, which most S3-compatible stores need. */
  forcePathStyle?: boolean;
  /** Static credentials; without them the SDK's default provider chain is used. */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
}

export interface AwsBackendOptions {
  s3?: AwsServiceOptions;
  sns?: AwsServiceOptions;
  lambda?: AwsServiceOptions;
  /**
   * Region for a service that has none of its own, when the resource ARN does not name one
   * (topic and function ARNs do); else AWS_REGION, else us-east-1.
   */
  region?: string;
  /** How long a RequestResponse invocation may take; SES waits 30 s. */
  requestResponseTimeoutMs?: number;
  /**
   * How long a connection may take to open, and a request may sit with no data moving, before
   * it fails as transient. Without them a hung endpoint would hold a message's actions forever.
   * Default 10 s and 120 s.
   */
  timeouts?: { connectMs?: number; idleMs?: number };
  sendDsn: (request: SendDsnRequest) => Promise<Record<string, unknown>>;
  deliverToMailbox: (request: MailboxRequest) => Promise<Record<string, unknown>>;
}

/**
 * The engine retries transient failures for hours with its own backoff (docs/behaviour.md §8), so the
 * SDK only smooths over brief hiccups instead of holding the action for minutes.
 */
const SDK_MAX_ATTEMPTS = 3;

const DEFAULT_REQUEST_RESPONSE_TIMEOUT_MS = DEFAULTS.requestResponseTimeoutMs;

/**
 * Action primitives on AWS SDK v3: S3 PutObject, SNS Publish and Lambda Invoke, with one
 * client per service and region, made on first use. DSNs and WorkMail delivery are not AWS
 * API calls and go to the given senders.
 */
export function awsBackend(options: AwsBackendOptions): ActionBackend {
  const defaultRegion = options.region ?? process.env["AWS_REGION"] ?? "us-east-1";
  const timeoutMs = options.requestResponseTimeoutMs ?? DEFAULT_REQUEST_RESPONSE_TIMEOUT_MS;
  let s3: S3Client | undefined;
  const snsClients = new Map<string, SNSClient>();
  const lambdaClients = new Map<string, LambdaClient>();

  const regionFor = (service: AwsServiceOptions | undefined, arn?: string) =>
    service?.region ?? (arn === undefined ? undefined : arnRegion(arn)) ?? defaultRegion;

  // Bucket names carry no region, so S3 needs only the one client.
  const s3Client = () =>
    (s3 ??= new S3Client({
      ...baseConfig(options.s3, regionFor(options.s3), options.timeouts),
      ...(options.s3?.forcePathStyle !== undefined && { forcePathStyle: options.s3.forcePathStyle }),
      ...(sendChecksumOnlyWhenRequired(options.s3) && { requestChecksumCalculation: "WHEN_REQUIRED" as const }),
    }));
  const snsClient = (topicArn: string) => {
    const region = regionFor(options.sns, topicArn);
    return cached(snsClients, region, () => new SNSClient(baseConfig(options.sns, region, options.timeouts)));
  };
  const lambdaClient = (functionArn: string) => {
    const region = regionFor(options.lambda, functionArn);
    return cached(lambdaClients, region, () => new LambdaClient(baseConfig(options.lambda, region, options.timeouts)));
  };

  return {
    async putObject(request) {
      const context = `S3 PutObject s3://${request.bucket}/${request.key}`;
      if (request.kmsKeyArn !== undefined) {
        // Storing the message unencrypted where the rule asked for encryption would be worse
        // than not storing it.
        throw new ActionError("permanent", `${context}: S3Action.KmsKeyArn (client-side encryption) is not supported yet`);
      }
      try {
        const response = await s3Client().send(
          new PutObjectCommand({
            Bucket: request.bucket,
            Key: request.key,
            // Streamed with its length known up front, so the SDK never buffers the message.
            // A stream cannot be replayed, so the SDK does not retry this call: the engine
            // does, with a new stream.
            Body: Readable.from(request.body, { objectMode: false }),
            ContentLength: request.contentLength,
          }),
        );
        return {
          bucket: request.bucket,
          key: request.key,
          etag: response.ETag,
          ...(response.VersionId !== undefined && { versionId: response.VersionId }),
        };
      } catch (error) {
        throw classifyAwsError(error, context);
      }
    },

    async publish(request) {
      try {
        const response = await snsClient(request.topicArn).send(
          new PublishCommand({ TopicArn: request.topicArn, Subject: request.subject, Message: request.message }),
        );
        return { messageId: response.MessageId };
      } catch (error) {
        throw classifyAwsError(error, `SNS Publish ${request.topicArn}`);
      }
    },

    async invoke(request) {
      const context = `Lambda Invoke ${request.functionArn}`;
      const command = new InvokeCommand({
        FunctionName: request.functionArn,
        InvocationType: request.invocationType,
        Payload: Buffer.from(request.payload, "utf8"),
      });
      const client = lambdaClient(request.functionArn);

      if (request.invocationType === "Event") {
        try {
          const response = await client.send(command);
          return { result: null, detail: { statusCode: response.StatusCode } };
        } catch (error) {
          throw classifyAwsError(error, context);
        }
      }

      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), timeoutMs);
      let response;
      try {
        response = await client.send(command, { abortSignal: abort.signal });
      } catch (error) {
        if (abort.signal.aborted) {
          throw new ActionError("transient", `${context}: timed out after ${timeoutMs / 1000} s`, { cause: error });
        }
        throw classifyAwsError(error, context);
      } finally {
        clearTimeout(timer);
      }

      // An empty response body comes back as null, whatever the SDK's type says.
      const payload: Uint8Array | null | undefined = response.Payload;
      const text = payload ? Buffer.from(payload).toString("utf8") : "";
      if (response.FunctionError !== undefined) {
        // The function ran and threw (or timed out inside Lambda). That is usually a passing
        // condition (a dependency was down) and the function's owner can fix it within the
        // retry window, so it is retried rather than dead-lettering the message at once.
        throw new ActionError("transient", `${context}: the function failed (${response.FunctionError}): ${excerpt(text)}`);
      }
      let result: unknown = null;
      if (text.trim() !== "") {
        try {
          result = JSON.parse(text);
        } catch (error) {
          // Lambda serializes what a function returns as JSON; anything else comes from an
          // endpoint that is not Lambda, and asking again will not change it.
          throw new ActionError("permanent", `${context}: the function returned a payload that is not JSON: ${excerpt(text)}`, {
            cause: error,
          });
        }
      }
      return {
        result,
        detail: {
          statusCode: response.StatusCode,
          ...(response.ExecutedVersion !== undefined && { executedVersion: response.ExecutedVersion }),
        },
      };
    },

    sendDsn: (request) => options.sendDsn(request),
    deliverToMailbox: (request) => options.deliverToMailbox(request),

    // Only "not found" says no: a refusal to look (403) or a failure says nothing of the target.
    async targetExists(target) {
      try {
        if (target.service === "S3") await s3Client().send(new HeadBucketCommand({ Bucket: target.bucket }));
        else if (target.service === "SNS") await snsClient(target.topicArn).send(new GetTopicAttributesCommand({ TopicArn: target.topicArn }));
        else await lambdaClient(target.functionArn).send(new GetFunctionCommand({ FunctionName: target.functionArn }));
        return true;
      } catch (error) {
        const { name, $metadata } = error as { name?: string; $metadata?: { httpStatusCode?: number } };
        if (name === "NotFound" || name === "NoSuchBucket" || name === "NotFoundException" || name === "ResourceNotFoundException") return false;
        return $metadata?.httpStatusCode === 404 ? false : null;
      }
    },
  };
}

/**
 * Only what was given is passed on: a key set to undefined would hide what the SDK finds
 * itself (AWS_ENDPOINT_URL_SNS and the like, the default credential chain).
 */
function baseConfig(service: AwsServiceOptions | undefined, region: string, timeouts: AwsBackendOptions["timeouts"]) {
  return {
    region,
    maxAttempts: SDK_MAX_ATTEMPTS,
    requestHandler: {
      connectionTimeout: timeouts?.connectMs ?? 10_000,
      socketTimeout: timeouts?.idleMs ?? 120_000,
    },
    ...(service?.endpoint !== undefined && { endpoint: service.endpoint }),
    ...(service?.credentials !== undefined && { credentials: service.credentials }),
  };
}

/**
 * The SDK sends PutObject bodies aws-chunked with a trailing CRC32 by default. Stores that
 * speak S3 without that extension (s3rver, older MinIO and Ceph) then keep the chunk framing
 * as part of the object, silently corrupting the message. Against a custom endpoint the
 * checksum is therefore sent only where an operation requires it, unless the user chose
 * otherwise through AWS_REQUEST_CHECKSUM_CALCULATION.
 */
function sendChecksumOnlyWhenRequired(service: AwsServiceOptions | undefined): boolean {
  const env = process.env;
  if (env["AWS_REQUEST_CHECKSUM_CALCULATION"] !== undefined) return false;
  return (service?.endpoint ?? env["AWS_ENDPOINT_URL_S3"] ?? env["AWS_ENDPOINT_URL"]) !== undefined;
}

/** The region of `arn:partition:service:region:account:resource`, if the ARN names one. */
function arnRegion(arn: string): string | undefined {
  const parts = arn.split(":");
  return parts[0] === "arn" && parts[3] ? parts[3] : undefined;
}

function cached<T>(clients: Map<string, T>, region: string, create: () => T): T {
  let client = clients.get(region);
  if (client === undefined) {
    client = create();
    clients.set(region, client);
  }
  return client;
}

function excerpt(text: string): string {
  return text.length > 500 ? `${text.slice(0, 500)}…` : text || "(empty)";
}
