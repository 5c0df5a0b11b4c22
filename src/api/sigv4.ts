import { timingSafeEqual } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import { isIP } from "node:net";
import { Hash } from "@smithy/hash-node";
import { HttpRequest } from "@smithy/protocol-http";
import { SignatureV4 } from "@smithy/signature-v4";
import type { ApiCredential } from "../config/schema.js";
import { SesError } from "./operation.js";

export interface SignedRequest {
  method: string;
  /** The path without the query. */
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

const AUTHORIZATION = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/;

const MISMATCH =
  "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

/** 127.0.0.0/8, ::1 and their IPv4-mapped spelling. */
export function isLoopback(address: string): boolean {
  const bare = address.startsWith("::ffff:") && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
  return bare === "::1" || (isIP(bare) === 4 && bare.startsWith("127."));
}

function amzDate(text: string | undefined): Date | null {
  const match = /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/.exec(text ?? "");
  if (!match) return null;
  const [, y, mo, d, h, mi, s] = match.map(Number) as number[];
  return new Date(Date.UTC(y!, mo! - 1, d!, h!, mi!, s!));
}

const header = (headers: IncomingHttpHeaders, name: string): string | undefined => {
  const value = headers[name];
  return Array.isArray(value) ? value.join(",") : value;
};

/**
 * Checks a request's AWS Signature Version 4 and returns its key and region. The expected
 * signature is computed by the AWS SDK's own signer over the headers the client signed, so the
 * two cannot disagree on canonicalisation.
 */
export async function verifySignature(
  request: SignedRequest,
  credentials: readonly ApiCredential[],
  clientAddress: string,
  now: Date,
  maxSkewMs: number,
): Promise<{ credential: ApiCredential; region: string }> {
  const authorization = header(request.headers, "authorization");
  if (authorization === undefined) {
    if (request.query.has("X-Amz-Signature")) throw new SesError("IncompleteSignature", "Presigned requests are not accepted by this endpoint");
    throw new SesError("MissingAuthenticationToken", "Request is missing Authentication Token", 403);
  }
  const match = AUTHORIZATION.exec(authorization.trim());
  if (!match) {
    throw new SesError("IncompleteSignature", `Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' (AWS4-HMAC-SHA256): ${authorization.slice(0, 200)}`);
  }
  const [, accessKeyId, scopeDate, region, service, signedHeaders, signature] = match as unknown as string[];
  const credential = credentials.find((c) => c.accessKeyId === accessKeyId);
  if (!credential || (credential.loopbackOnly && !isLoopback(clientAddress))) {
    throw new SesError("InvalidClientTokenId", "The security token included in the request is invalid.", 403);
  }
  if (service !== "ses") throw new SesError("SignatureDoesNotMatch", "Credential should be scoped to correct service: 'ses'.", 403);
  const dateText = header(request.headers, "x-amz-date");
  const date = amzDate(dateText);
  if (!date || !dateText!.startsWith(scopeDate!)) {
    throw new SesError("IncompleteSignature", "X-Amz-Date is missing or does not match the credential scope's date");
  }
  if (Math.abs(now.getTime() - date.getTime()) > maxSkewMs) {
    const edge = new Date(now.getTime() + (date < now ? -maxSkewMs : maxSkewMs));
    const compact = (d: Date) => d.toISOString().replace(/[-:]|\.\d{3}/g, "");
    throw new SesError(
      "SignatureDoesNotMatch",
      `Signature expired: ${dateText} is now ${date < now ? "earlier" : "later"} than ${compact(edge)} (${compact(now)} ${date < now ? "-" : "+"} ${Math.round(maxSkewMs / 60_000)} min.)`,
      403,
    );
  }
  const names = signedHeaders!.split(";");
  const headers: Record<string, string> = {};
  for (const name of names) {
    const value = header(request.headers, name);
    if (value === undefined) throw new SesError("IncompleteSignature", `Signed header ${name} is missing from the request`);
    headers[name] = value;
  }
  const signer = new SignatureV4({
    credentials: { accessKeyId: credential.accessKeyId, secretAccessKey: credential.secretAccessKey },
    region: region!,
    service: "ses",
    sha256: Hash.bind(null, "sha256"),
    uriEscapePath: true,
    applyChecksum: false,
  });
  const query: Record<string, string | string[]> = {};
  for (const key of new Set(request.query.keys())) {
    const values = request.query.getAll(key);
    query[key] = values.length === 1 ? (values[0] as string) : values;
  }
  const hostHeader = headers.host ?? "";
  const signed = await signer.sign(
    new HttpRequest({ method: request.method, protocol: "http:", hostname: hostHeader, path: request.path, query, headers, body: request.body }),
    { signingDate: date, unsignableHeaders: new Set(), signableHeaders: new Set(names) },
  );
  const expected = /Signature=([0-9a-f]{64})/.exec(String(signed.headers.authorization ?? signed.headers.Authorization))?.[1] ?? "";
  if (expected.length !== 64 || !timingSafeEqual(Buffer.from(expected), Buffer.from(signature!))) {
    throw new SesError("SignatureDoesNotMatch", MISMATCH, 403);
  }
  return { credential, region: region! };
}
