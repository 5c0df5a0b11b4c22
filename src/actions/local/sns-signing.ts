import { createHash, createPrivateKey, createSign, X509Certificate } from "node:crypto";
import type { KeyObject } from "node:crypto";
import { link, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { generate } from "selfsigned";
import { syncPath } from "../durable.js";
import { ensureDir } from "./files.js";

/** SNS's SignatureVersion: 1 signs with RSA-SHA1 (the default of every SNS topic), 2 with RSA-SHA256. */
export type SignatureVersion = "1" | "2";

/** The key that signs local SNS envelopes and the certificate consumers fetch from SigningCertURL. */
export interface SigningIdentity {
  privateKey: KeyObject;
  certificatePem: string;
  /** `SimpleNotificationService-<hash>.pem`, named like SNS's own certificates. */
  certificateName: string;
}

/**
 * The keys of a Notification whose values SNS signs, in the order it signs them, each as
 * "Key\nvalue\n" and skipped when absent (Subject) ("Verifying the signatures of Amazon SNS
 * messages", SNS developer guide; the same list as AWS's sns-validator).
 */
const SIGNED_KEYS = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"] as const;

export function stringToSign(envelope: Record<string, string>): string {
  if (envelope.Type !== "Notification") throw new Error(`SNS envelope Type: expected "Notification", found ${JSON.stringify(envelope.Type)}`);
  return SIGNED_KEYS.flatMap((key) => (envelope[key] === undefined ? [] : [`${key}\n${envelope[key]}\n`])).join("");
}

/** The envelope's Signature: base64 of the RSA signature of its string to sign. */
export function signEnvelope(envelope: Record<string, string>, version: SignatureVersion, key: KeyObject): string {
  return createSign(version === "1" ? "RSA-SHA1" : "RSA-SHA256")
    .update(stringToSign(envelope), "utf8")
    .sign(key, "base64");
}

const FILE_NAME = "signing.pem";
const CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\r?\n?/;
/** Long, because the certificate is made once and kept: consumers may cache or pin it. */
const VALIDITY_YEARS = 10;

/**
 * The signing key and certificate in `<dir>/signing.pem`, made on first use and kept from then
 * on, so that restarts (and a replay on the same data directory) sign with the same key.
 */
export async function loadSigningIdentity(dir: string, clock: () => Date): Promise<SigningIdentity> {
  const file = join(dir, FILE_NAME);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    text = await createIdentityFile(dir, file, clock());
  }
  return parseIdentity(file, text);
}

function parseIdentity(file: string, text: string): SigningIdentity {
  const certificatePem = CERTIFICATE.exec(text)?.[0];
  let certificate: X509Certificate;
  let privateKey: KeyObject;
  try {
    if (!certificatePem) throw new Error("no CERTIFICATE block");
    certificate = new X509Certificate(certificatePem);
    privateKey = createPrivateKey(text.replace(CERTIFICATE, ""));
    if (!certificate.checkPrivateKey(privateKey)) throw new Error("the key does not belong to the certificate");
  } catch (error) {
    throw new Error(`SNS signing identity ${file}: ${(error as Error).message} (delete the file to make a new key and certificate)`, { cause: error });
  }
  const hash = createHash("sha256").update(certificate.raw).digest("hex").slice(0, 32);
  return { privateKey, certificatePem, certificateName: `SimpleNotificationService-${hash}.pem` };
}

/**
 * Writes a new key and certificate. Linked into place rather than renamed, so that of two
 * processes making one at once the first wins and the second reads it.
 */
async function createIdentityFile(dir: string, file: string, now: Date): Promise<string> {
  await ensureDir(dir);
  const text = await makeSelfSignedCertificate(now);
  const temporary = join(dir, `.${FILE_NAME}.${process.pid}.${Date.now()}`);
  await writeFile(temporary, text, { mode: 0o600, flush: true });
  try {
    await link(temporary, file);
    await syncPath(dir);
    return text;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    return await readFile(file, "utf8");
  } finally {
    await rm(temporary, { force: true });
  }
}

/**
 * An RSA-2048 key and a self-signed X.509 certificate for it, as PEM (key, then certificate).
 * node:crypto makes keys but not certificates; selfsigned (pure JavaScript over WebCrypto and
 * @peculiar/x509, no native addon, already used by the tests for TLS) makes the certificate.
 */
async function makeSelfSignedCertificate(now: Date): Promise<string> {
  const notAfterDate = new Date(now);
  notAfterDate.setUTCFullYear(notAfterDate.getUTCFullYear() + VALIDITY_YEARS);
  const pems = await generate([{ name: "commonName", value: "receiptd local SNS signing" }], {
    keySize: 2048,
    algorithm: "sha256",
    notBeforeDate: now,
    notAfterDate,
    extensions: [
      { name: "basicConstraints", cA: false, critical: true },
      { name: "keyUsage", digitalSignature: true, critical: true },
    ],
  });
  return `${pems.private.trimEnd()}\n${pems.cert.trimEnd()}\n`;
}
