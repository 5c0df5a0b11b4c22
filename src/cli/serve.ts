import { ConfigError, defaultConfig, loadConfigFile } from "../config/config.js";
import { DEFAULTS } from "../config/defaults.js";
import { startDaemon } from "../daemon/daemon.js";
import { loggerFromEnvironment } from "../ops/log.js";
import { PolicyLoadError } from "../ops/reload.js";
import { UsageError, parseCommandLine } from "./usage.js";

const HELP = `Usage: receiptd serve [--config <config.json>]

Runs the MX daemon: SMTP in, the active rule set's actions out, every accepted message
durable before its 250. Without --config it runs the embedded default: SMTP on
${DEFAULTS.smtp.listen.host}:${DEFAULTS.smtp.listen.port}, rules/example.json active, the local back end in ./${DEFAULTS.dataDir}, the admin
HTTP port (healthz, readyz, metrics) on ${DEFAULTS.admin.host}:${DEFAULTS.admin.port}.

Signals: SIGTERM or SIGINT stop gracefully; SIGHUP reloads the rule set and filters.
Logs: one JSON object per line on stderr, or readable lines when stderr is a terminal
(RECEIPTD_LOG_FORMAT=json|pretty, RECEIPTD_LOG_LEVEL=debug|info|warn|error).
`;

export async function runServe(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(
    args,
    { config: { type: "string" }, help: { type: "boolean", short: "h" } },
    HELP,
  );
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(`serve takes no arguments (got "${positionals[0]}")`, HELP);
  const logger = loggerFromEnvironment();

  let daemon;
  try {
    const config = values.config === undefined ? await defaultConfig() : await loadConfigFile(values.config);
    daemon = await startDaemon(config, { logger });
  } catch (error) {
    if (error instanceof ConfigError || error instanceof PolicyLoadError) {
      process.stderr.write(`${error.message}\n`);
      return 2;
    }
    throw error;
  }

  process.on("SIGHUP", () => void daemon.reload());
  return new Promise<number>((resolve) => {
    const stop = (signal: string) => {
      logger.info("daemon.signal", { signal });
      daemon.stop().then(
        () => resolve(0),
        (error: unknown) => {
          logger.error("daemon.stop_failed", { error });
          resolve(1);
        },
      );
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
}
