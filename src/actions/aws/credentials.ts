import { S3Client } from "@aws-sdk/client-s3";

/**
 * Resolves AWS credentials the way the back end's clients will (the SDK's default chain:
 * environment, shared files, SSO, container and instance metadata), so that missing ones are
 * reported at start rather than as a transient failure of the first message's action, retried
 * for hours. Rejects with the chain's reason, or when nothing answered within `timeoutMs`.
 */
export async function checkAwsCredentials(options: { region: string; timeoutMs: number }): Promise<void> {
  const client = new S3Client({ region: options.region });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no credential provider answered within ${options.timeoutMs / 1000} s`)), options.timeoutMs);
  });
  try {
    await Promise.race([client.config.credentials(), timeout]);
  } finally {
    clearTimeout(timer);
    client.destroy();
  }
}
