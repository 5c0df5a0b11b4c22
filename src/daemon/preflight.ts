import { readFile } from "node:fs/promises";
import { createSecureContext } from "node:tls";
import { checkAwsCredentials } from "../actions/aws/credentials.js";
import { ConfigError } from "../config/config.js";
import type { ReceiptdConfig } from "../config/config.js";

/** How long start-up waits for the SDK's credential chain (instance metadata can be slow to say no). */
const CREDENTIALS_TIMEOUT_MS = 5000;

/**
 * The configuration checks that need I/O, run before the daemon touches anything: errors that
 * would otherwise show up as a stack trace, or only once mail arrives (docs/behaviour.md §10).
 */
export async function preflight(config: ReceiptdConfig): Promise<void> {
  const { tls } = config.serve.smtp;
  if (tls) await checkTlsFiles(tls);
  const aws = (["S3", "SNS", "Lambda"] as const).filter((type) => config.backends[type] === "aws");
  if (aws.length > 0) {
    try {
      await checkAwsCredentials({
        region: config.aws.region ?? process.env["AWS_REGION"] ?? "us-east-1",
        timeoutMs: CREDENTIALS_TIMEOUT_MS,
      });
    } catch (error) {
      throw new ConfigError("config.backends", [
        `${aws.join(", ")} ${aws.length === 1 ? "goes" : "go"} to AWS, but no AWS credentials were found (${(error as Error).message}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with an instance or task role`,
      ]);
    }
  }
}

async function checkTlsFiles(tls: { cert: string; key: string }): Promise<void> {
  const read = async (field: "cert" | "key") => {
    try {
      return await readFile(tls[field]);
    } catch (error) {
      throw new ConfigError(`config.smtp.tls.${field}`, [`cannot read ${tls[field]}: ${(error as Error).message}`]);
    }
  };
  const cert = await read("cert");
  const key = await read("key");
  try {
    createSecureContext({ cert, key });
  } catch (error) {
    throw new ConfigError("config.smtp.tls", [
      `${tls.cert} and ${tls.key} are not a PEM certificate and its private key: ${(error as Error).message}`,
    ]);
  }
}
