import type { VerdictStatus } from "../ses/verdicts.js";

/** What a scanner says of one message. */
export interface ScanResult {
  verdict: Extract<VerdictStatus, "PASS" | "FAIL" | "GRAY" | "PROCESSING_FAILED">;
  /** The engine's own words: score and threshold, the virus name, or why it could not say. */
  detail: string;
}

/** One engine's client: streams the message, resolves with the verdict, rejects when the engine fails. */
export interface Scanner {
  /** `spamd`, `clamd`: the metric label and the log field. */
  engine: string;
  kind: "spam" | "virus";
  scan(message: { size: number; open(): AsyncIterable<Buffer> }, signal: AbortSignal): Promise<ScanResult>;
  /** Resolves when the engine answers its protocol's ping; rejects with why not. */
  ping(signal: AbortSignal): Promise<void>;
  /** Where it is, for logs and /readyz. */
  where: string;
}

export type { EngineAddress } from "../config/schema.js";

/**
 * A scan with a deadline: an engine that fails, answers garbage or takes longer than
 * `timeoutMs` gives PROCESSING_FAILED (issue 13 item 2), never a message held up.
 */
export async function scanWithDeadline(scanner: Scanner, message: { size: number; open(): AsyncIterable<Buffer> }, timeoutMs: number): Promise<ScanResult> {
  const abort = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<ScanResult>((resolve) => {
    timer = setTimeout(() => {
      abort.abort();
      resolve({ verdict: "PROCESSING_FAILED", detail: `${scanner.engine} did not answer within ${timeoutMs} ms` });
    }, timeoutMs);
  });
  try {
    return await Promise.race([
      scanner.scan(message, abort.signal).catch((error: unknown) => ({
        verdict: "PROCESSING_FAILED" as const,
        detail: `${scanner.engine}: ${error instanceof Error ? error.message : String(error)}`,
      })),
      deadline,
    ]);
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
}
