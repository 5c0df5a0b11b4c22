import { createHash } from "node:crypto";
import type { Hash } from "node:crypto";
import { ActionError } from "../backend.js";
import type { PutObjectRequest } from "../backend.js";
import { classifyFsError, release, replaceFile } from "./files.js";
import { resolveInside, safeSegment } from "./paths.js";

async function* hashing(body: AsyncIterable<Buffer>, hash: Hash): AsyncIterable<Buffer> {
  for await (const chunk of body) {
    hash.update(chunk);
    yield chunk;
  }
}

/** `<root>/<bucket>/<key>`, with the key's slashes as directories. */
export function objectPath(root: string, bucket: string, key: string): string {
  const whole = `${bucket}/${key}`;
  safeSegment(bucket, "bucket", bucket);
  return resolveInside(root, [bucket, ...key.split("/")], "object key", whole);
}

export async function putObject(root: string, request: PutObjectRequest): Promise<Record<string, unknown>> {
  try {
    if (request.kmsKeyArn !== undefined) {
      throw new ActionError("permanent", "KMS encryption (S3 action KmsKeyArn) is not supported by the local back end");
    }
    const path = objectPath(root, request.bucket, request.key);
    const md5 = createHash("md5");
    const bytes = await replaceFile(path, hashing(request.body, md5), request.contentLength);
    // S3's ETag of a single-part upload is the quoted MD5 of the content.
    return { bucket: request.bucket, key: request.key, path, bytes, ETag: `"${md5.digest("hex")}"` };
  } catch (error) {
    await release(request.body);
    throw classifyFsError(error, `s3://${request.bucket}/${request.key}`);
  }
}
