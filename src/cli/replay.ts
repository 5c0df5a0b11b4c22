import { executorFromConfig } from "../actions/compose.js";
import { ConfigError, defaultConfig, loadConfigFile } from "../config/config.js";
import { compileFilters } from "../rules/filters.js";
import { loadFiltersFile, loadRuleSetFile } from "../config/rule-files.js";
import { identitiesFrom, identitiesOfRules } from "../rules/recipients.js";
import { ReplaySummary, replayJson, replayText } from "../replay/format.js";
import { messageFiles, replayFiles, replaySpool } from "../replay/replay.js";
import type { ReplaySettings } from "../replay/replay.js";
import { ARRIVAL_OPTIONS, SILENT_PROGRESS, SPOOL_OPTIONS, checkLambdaResults, parseArrival, progressMeter, spoolMessages } from "./replay-options.js";
import { UsageError, parseCommandLine } from "./usage.js";
import { reportValidationError } from "./validate.js";

const HELP = `Usage: receiptd replay <file-or-dir>... --rules <rules.json> [options]
       receiptd replay --spool <dir> [--since <time>] --rules <rules.json> [options]

Pushes .eml files (directories are searched for *.eml), or the mail a daemon received,
through a receipt rule set and shows, per message, the RCPT TO answers, the rules that
matched and what each action did or would do. Nothing is sent anywhere: actions are
recorded.

Options:
  --rules <file>              rule set JSON (aws ses describe-active-receipt-rule-set)
  --filters <file>            IP filters JSON (aws ses list-receipt-filters)
  --identity <domain|addr>    a verified identity (repeatable); default: the domains
                              the rule set's recipients name
  --from <addr>               envelope sender (default: Return-Path, else From)
  --to <addr>                 envelope recipient (repeatable; default: Delivered-To or
                              X-Original-To, else To + Cc + Bcc)
  --client-ip <ip>            client address, checked against the IP filters and
                              named in Received (default 127.0.0.1)
  --helo <name>               the client's EHLO name, for Received (default localhost)
  --tls                       the session was under TLS
  --lambda-result <arn>=<disposition>
                              what a RequestResponse Lambda returns (repeatable),
                              e.g. STOP_RULE or STOP_RULE_SET; default: none (continue)
  --executor record|local|aws what runs the actions (default record: nothing runs,
                              every action is recorded); local writes under the data
                              directory, aws calls S3, SNS and Lambda
  --config <file>             configuration for local and aws (JSON; see README)
  --spool <dir>               past mail: every message in a daemon's spool (its data
                              directory or the spool itself; read without stopping it),
                              oldest first, with the envelope, client, TLS, verdicts,
                              receipt headers and message ID it was received with
  --since <time>              with --spool: received at or after, ISO 8601 or a duration
                              before now (90s, 30m, 2h, 7d)
  --json                      one JSON object per message per line

Exit codes:
  0  every file replayed and no action failed
  1  some file could not be read or parsed (wins over 3)
  2  bad usage, an invalid rule set or configuration, or a --lambda-result
     function that no Lambda action of the rule set calls
  3  an action failed (e.g. no handler for a Lambda, no AWS credentials)
`;

const OPTIONS = {
  rules: { type: "string" },
  ...ARRIVAL_OPTIONS,
  ...SPOOL_OPTIONS,
  executor: { type: "string" },
  config: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/** Replay's exit codes, printed in its help and documented in the README. */
const EXIT = { ok: 0, unreadable: 1, usage: 2, actionFailed: 3 } as const;

export async function runReplay(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(args, OPTIONS, HELP);
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (!values.rules) throw new UsageError("replay needs --rules <file>", HELP);
  const spooled = await spoolMessages(values, HELP);
  if (spooled === null && positionals.length === 0) throw new UsageError("replay needs at least one .eml file or directory, or --spool", HELP);
  if (spooled !== null && positionals.length > 0) throw new UsageError("replay takes files or --spool, not both", HELP);
  const arrival = parseArrival(values, HELP);
  const { lambdaResults } = arrival;
  const executorKind = values.executor ?? "record";
  if (executorKind !== "record" && executorKind !== "local" && executorKind !== "aws") {
    throw new UsageError(`--executor "${executorKind}": expected record, local or aws`, HELP);
  }
  if (lambdaResults.size > 0 && executorKind !== "record") {
    throw new UsageError("--lambda-result stands in for functions when recording; with local or aws the functions answer", HELP);
  }
  if (values.config !== undefined && executorKind === "record") {
    throw new UsageError("--config configures the local and aws executors; add --executor local or aws", HELP);
  }

  let settings: ReplaySettings;
  try {
    const [ruleSet, filters] = await Promise.all([
      loadRuleSetFile(values.rules),
      values.filters === undefined ? null : loadFiltersFile(values.filters),
    ]);
    checkLambdaResults(lambdaResults, [ruleSet], "replay");
    settings = {
      ruleSet,
      filters: filters ? compileFilters(filters) : null,
      identities: values.identity?.length ? identitiesFrom(values.identity) : identitiesOfRules(ruleSet.rules),
      ...arrival,
    };
    if (executorKind !== "record") {
      const config =
        values.config === undefined
          ? await defaultConfig({ backend: executorKind })
          : await loadConfigFile(values.config, { backend: executorKind });
      settings.executor = executorFromConfig(config);
      settings.hostname = config.hostname;
    }
  } catch (error) {
    if (reportValidationError(error)) return EXIT.usage;
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      return EXIT.usage;
    }
    throw error;
  }

  const summary = new ReplaySummary();
  const progress = values.json ? SILENT_PROGRESS : progressMeter("replayed");
  const outcomes = spooled === null ? replayFiles(messageFiles(positionals), settings) : replaySpool(spooled, settings);
  for await (const outcome of outcomes) {
    summary.add(outcome);
    progress.tick();
    process.stdout.write(values.json ? `${JSON.stringify(replayJson(outcome))}\n` : `${replayText(outcome)}\n`);
  }
  progress.done();
  if (!values.json) process.stdout.write(summary.toString());
  if (summary.errors > 0) return EXIT.unreadable;
  return summary.failed > 0 ? EXIT.actionFailed : EXIT.ok;
}
