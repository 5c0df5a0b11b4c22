import { compileFilters } from "../rules/filters.js";
import { loadFiltersFile, loadRuleSetFile } from "../config/rule-files.js";
import { identitiesFrom, identitiesOfRules } from "../rules/recipients.js";
import { diffResults } from "../replay/diff.js";
import { DiffSummary, diffJson, diffText } from "../replay/diff-format.js";
import { messageFiles, replayFilesTwice, replaySpoolTwice } from "../replay/replay.js";
import type { ReplaySettings } from "../replay/replay.js";
import { ARRIVAL_OPTIONS, SILENT_PROGRESS, SPOOL_OPTIONS, checkLambdaResults, parseArrival, progressMeter, spoolMessages } from "./replay-options.js";
import { UsageError, parseCommandLine } from "./usage.js";
import { reportValidationError } from "./validate.js";

const HELP = `Usage: receiptd diff <old-rules.json> <new-rules.json> <file-or-dir>... [options]
       receiptd diff <old-rules.json> <new-rules.json> --spool <dir> [--since <time>] [options]

Replays every .eml file (directories are searched for *.eml) under both rule sets, each
file read once, with the same envelope, identities, filters and Lambda results, and shows
per message what the new rule set changes: recipients accepted or refused (and the reply),
rules matched, actions and their parameters, and where evaluation stops. Nothing is sent
anywhere: actions are recorded.

Options:
  --filters <file>            IP filters JSON (aws ses list-receipt-filters), for both
  --identity <domain|addr>    a verified identity (repeatable); default: the domains that
                              either rule set's recipients name (identities belong to
                              the account, not to a rule set, so both sides get the same)
  --from <addr>               envelope sender (default: Return-Path, else From)
  --to <addr>                 envelope recipient (repeatable; default: Delivered-To or
                              X-Original-To, else To + Cc + Bcc)
  --client-ip <ip>            client address, checked against the IP filters
  --helo <name>               the client's EHLO name, for Received (default localhost)
  --tls                       the session was under TLS
  --lambda-result <arn>=<disposition>
                              what a RequestResponse Lambda returns (repeatable)
  --spool <dir>               past mail instead of files: every message in a daemon's
                              spool (its data directory or the spool itself), with the
                              envelope, client and TLS it was received with
  --since <time>              with --spool: received at or after, ISO 8601 or a duration
                              before now (90s, 30m, 2h, 7d)
  --json                      one JSON object per changed message per line

Exit codes:
  0  nothing changed
  1  some message changed
  2  bad usage, an invalid rule set or filters, or a --lambda-result function that no
     RequestResponse Lambda action of either rule set calls
  3  some file could not be read or parsed, so nothing can be concluded (wins over 0 and 1)
`;

const OPTIONS = {
  ...ARRIVAL_OPTIONS,
  ...SPOOL_OPTIONS,
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/** Diff's exit codes, printed in its help and documented in the README. */
const EXIT = { unchanged: 0, changed: 1, usage: 2, unreadable: 3 } as const;

export async function runDiff(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(args, OPTIONS, HELP);
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const [oldRules, newRules, ...corpus] = positionals;
  const spooled = await spoolMessages(values, HELP);
  if (oldRules === undefined || newRules === undefined || (corpus.length === 0 && spooled === null)) {
    throw new UsageError("diff needs <old-rules.json> <new-rules.json> and at least one .eml file or directory, or --spool", HELP);
  }
  if (spooled !== null && corpus.length > 0) throw new UsageError("diff takes files or --spool, not both", HELP);
  const arrival = parseArrival(values, HELP);

  let before: ReplaySettings;
  let after: ReplaySettings;
  try {
    const [oldSet, newSet, filters] = await Promise.all([
      loadRuleSetFile(oldRules),
      loadRuleSetFile(newRules),
      values.filters === undefined ? null : loadFiltersFile(values.filters),
    ]);
    checkLambdaResults(arrival.lambdaResults, [oldSet, newSet], "diff");
    const identities = identitiesFrom(
      values.identity?.length
        ? values.identity
        : [identitiesOfRules(oldSet.rules), identitiesOfRules(newSet.rules)].flatMap((ids) => [...ids.domains]),
    );
    // One receipt time for the whole run, so that nothing differs but the rule set.
    const receivedAt = new Date();
    const shared = { filters: filters ? compileFilters(filters) : null, identities, clock: () => receivedAt, ...arrival };
    before = { ruleSet: oldSet, ...shared };
    after = { ruleSet: newSet, ...shared };
  } catch (error) {
    if (reportValidationError(error)) return EXIT.usage;
    throw error;
  }

  const summary = new DiffSummary();
  const progress = values.json ? SILENT_PROGRESS : progressMeter("compared");
  const outcomes = spooled === null ? replayFilesTwice(messageFiles(corpus), before, after) : replaySpoolTwice(spooled, before, after);
  for await (const outcome of outcomes) {
    progress.tick();
    if ("error" in outcome) {
      summary.addError();
      process.stdout.write(values.json ? `${JSON.stringify(outcome)}\n` : `${outcome.file}\n  error: ${outcome.error}\n\n`);
      continue;
    }
    const diff = { file: outcome.file, messageId: outcome.before.messageId, changes: diffResults(outcome.before, outcome.after) };
    summary.add(diff);
    if (diff.changes.length === 0) continue;
    process.stdout.write(values.json ? `${JSON.stringify(diffJson(diff))}\n` : `${diffText(diff)}\n`);
  }
  progress.done();
  if (!values.json) process.stdout.write(summary.toString());
  if (summary.errors > 0) return EXIT.unreadable;
  return summary.changed > 0 ? EXIT.changed : EXIT.unchanged;
}
