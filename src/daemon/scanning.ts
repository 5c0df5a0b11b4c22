import type { ReceivedMessage } from "../actions/message.js";
import type { ReceiptdConfig } from "../config/config.js";
import type { Logger } from "../ops/log.js";
import type { Metrics } from "../ops/metrics.js";
import { clamdScanner } from "../scan/clamd.js";
import { scanWithDeadline } from "../scan/scanner.js";
import type { Scanner } from "../scan/scanner.js";
import { rspamdScanner } from "../scan/rspamd.js";
import { spamdScanner } from "../scan/spamd.js";
import type { ScanRecord } from "../spool/journal.js";

/** The configured engines; empty when none is (the embedded default), and the verdicts stay GRAY. */
export function scannersOf(config: ReceiptdConfig): Scanner[] {
  const { scanning } = config.serve;
  return [
    ...(scanning.spamd ? [spamdScanner(scanning.spamd, { maxBytes: scanning.spamdMaxBytes })] : []),
    ...(scanning.rspamd ? [rspamdScanner(scanning.rspamd)] : []),
    ...(scanning.clamd ? [clamdScanner(scanning.clamd)] : []),
  ];
}

/**
 * One message through every engine at once, each within the deadline: the spam verdict from the
 * spam engine, the virus verdict from the virus engine, GRAY for a kind no engine scans.
 */
export function scanMessages(scanners: readonly Scanner[], options: { timeoutMs: number; metrics: Metrics; logger: Logger }) {
  return async (message: ReceivedMessage): Promise<ScanRecord> => {
    const record: ScanRecord = { spam: "GRAY", virus: "GRAY", detail: {} };
    await Promise.all(
      scanners.map(async (scanner) => {
        const started = performance.now();
        const result = await scanWithDeadline(scanner, message, options.timeoutMs);
        options.metrics.scans.inc({ engine: scanner.engine, verdict: result.verdict });
        options.metrics.scanSeconds.observe({ engine: scanner.engine }, (performance.now() - started) / 1000);
        if (result.verdict === "PROCESSING_FAILED") options.logger.warn("scanning.failed", { engine: scanner.engine, detail: result.detail });
        record[scanner.kind] = result.verdict;
        record.detail![scanner.engine] = result.detail;
      }),
    );
    return record;
  };
}

/**
 * Every engine pinged every `intervalMs` (and once at start): `problem()` names the first that
 * did not answer, for /readyz. A node whose scanners are down still takes and processes mail,
 * with PROCESSING_FAILED verdicts, but a cluster should send mail to nodes that can scan.
 */
export function watchScanners(scanners: readonly Scanner[], options: { intervalMs: number; timeoutMs: number; logger: Logger }) {
  const problems = new Map<string, string>();
  const check = async () => {
    await Promise.all(
      scanners.map(async (scanner) => {
        const signal = AbortSignal.timeout(options.timeoutMs);
        try {
          await scanner.ping(signal);
          if (problems.delete(scanner.engine)) options.logger.info("scanning.reachable", { engine: scanner.engine, where: scanner.where });
        } catch (error) {
          const why = `${scanner.engine} at ${scanner.where} does not answer: ${error instanceof Error ? error.message : String(error)}`;
          if (!problems.has(scanner.engine)) options.logger.warn("scanning.unreachable", { engine: scanner.engine, where: scanner.where, error: why });
          problems.set(scanner.engine, why);
        }
      }),
    );
  };
  void check();
  const timer = setInterval(() => void check(), options.intervalMs);
  timer.unref();
  return {
    problem: (): string | null => problems.values().next().value ?? null,
    close: () => clearInterval(timer),
  };
}
