import { randomBytes } from "node:crypto";
import { GetObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ActionError } from "../../src/actions/backend.js";
import { awsBackend } from "../../src/actions/aws/index.js";
import { closedEndpoint } from "../helpers/aws-http.js";
import { noTransports } from "../helpers/aws-options.js";
import { S3RVER_CREDENTIALS, startS3rver } from "../helpers/aws-s3rver.js";
import type { S3rverHandle } from "../helpers/aws-s3rver.js";

const BUCKET = "receiptd-inbound";

let s3rver: S3rverHandle;
beforeAll(async () => {
  s3rver = await startS3rver([BUCKET]);
});
afterAll(() => s3rver.close());

const s3Options = () => ({ endpoint: s3rver.endpoint, forcePathStyle: true, credentials: S3RVER_CREDENTIALS });

/** Yields `bytes` in chunks, counting how far the consumer has read. */
function chunked(bytes: Buffer, chunkSize: number) {
  const progress = { chunksYielded: 0 };
  async function* body() {
    for (let offset = 0; offset < bytes.length; offset += chunkSize) {
      progress.chunksYielded++;
      yield bytes.subarray(offset, offset + chunkSize);
    }
  }
  return { body: body(), progress };
}

async function getObject(key: string) {
  const client = new S3Client({ region: "us-east-1", ...s3Options() });
  try {
    const response = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    return { bytes: Buffer.from(await response.Body!.transformToByteArray()), etag: response.ETag };
  } finally {
    client.destroy();
  }
}

describe("AWS back end: S3 putObject against s3rver", () => {
  it("streams a multi-megabyte message into the bucket byte for byte", async () => {
    const message = randomBytes(6 * 1024 * 1024 + 17);
    const { body, progress } = chunked(message, 64 * 1024);
    const backend = awsBackend({ s3: s3Options(), ...noTransports });

    const result = await backend.putObject({ bucket: BUCKET, key: "inbound/0123456789abcdef", body, contentLength: message.length });

    expect(progress.chunksYielded).toBe(Math.ceil(message.length / (64 * 1024)));
    const stored = await getObject("inbound/0123456789abcdef");
    expect(stored.bytes.length).toBe(message.length);
    expect(stored.bytes.equals(message)).toBe(true);
    expect(result).toEqual({ bucket: BUCKET, key: "inbound/0123456789abcdef", etag: stored.etag });
  });

  it("overwrites the same key on a repeated write (docs/behaviour.md §8: at least once)", async () => {
    const backend = awsBackend({ s3: s3Options(), ...noTransports });
    for (const text of ["first attempt", "second attempt"]) {
      const bytes = Buffer.from(text);
      await backend.putObject({ bucket: BUCKET, key: "repeated", body: chunked(bytes, 4).body, contentLength: bytes.length });
    }
    expect((await getObject("repeated")).bytes.toString()).toBe("second attempt");
  });

  it("fails permanently for a bucket that does not exist", async () => {
    const backend = awsBackend({ s3: s3Options(), ...noTransports });
    const bytes = Buffer.from("Subject: x\r\n\r\nbody\r\n");
    const failure = await backend
      .putObject({ bucket: "no-such-bucket", key: "k", body: chunked(bytes, 8).body, contentLength: bytes.length })
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ActionError);
    expect(failure).toMatchObject({ failure: "permanent" });
    expect((failure as ActionError).message).toMatch(/^S3 PutObject s3:\/\/no-such-bucket\/k: NoSuchBucket \(HTTP 404\): /);
  });

  it("fails transiently when nothing listens at the endpoint", async () => {
    const backend = awsBackend({
      s3: { endpoint: await closedEndpoint(), forcePathStyle: true, credentials: S3RVER_CREDENTIALS },
      ...noTransports,
    });
    const bytes = Buffer.from("body");
    const failure = await backend
      .putObject({ bucket: BUCKET, key: "k", body: chunked(bytes, 2).body, contentLength: bytes.length })
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ActionError);
    expect(failure).toMatchObject({ failure: "transient" });
    expect((failure as ActionError).message).toContain("ECONNREFUSED");
  });

  it("refuses KmsKeyArn permanently rather than storing the message unencrypted", async () => {
    const backend = awsBackend({ s3: s3Options(), ...noTransports });
    const { body, progress } = chunked(Buffer.from("secret"), 2);
    const failure = await backend
      .putObject({ bucket: BUCKET, key: "encrypted", body, contentLength: 6, kmsKeyArn: "arn:aws:kms:us-east-1:123456789012:key/abc" })
      .catch((error: unknown) => error);
    expect(failure).toMatchObject({ failure: "permanent", message: expect.stringContaining("S3Action.KmsKeyArn") });
    expect(progress.chunksYielded).toBe(0);
    await expect(getObject("encrypted")).rejects.toMatchObject({ name: "NoSuchKey" });
  });
});
