import { loadFiltersFile, loadRuleSetFile } from "../config/rule-files.js";
import { RuleSetValidationError } from "../rules/parse.js";
import { UsageError, parseCommandLine } from "./usage.js";

const HELP = `Usage: receiptd validate <rules.json> [--filters <filters.json>]

Checks a rule set in the JSON of "aws ses describe-active-receipt-rule-set" (or
describe-receipt-rule-set), and optionally IP filters in the JSON of
"aws ses list-receipt-filters". Prints every error with its JSON path; exit 2 when invalid.
`;

/** Prints a validation error to stderr; returns false when the error was not one. */
export function reportValidationError(error: unknown): boolean {
  if (!(error instanceof RuleSetValidationError)) return false;
  process.stderr.write(`${error.message}\n`);
  return true;
}

export async function runValidate(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(
    args,
    { filters: { type: "string" }, help: { type: "boolean", short: "h" } },
    HELP,
  );
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError("validate takes exactly one rule set file", HELP);
  const [rulesFile] = positionals as [string];
  const results = await Promise.allSettled([
    loadRuleSetFile(rulesFile),
    values.filters === undefined ? Promise.resolve(null) : loadFiltersFile(values.filters),
  ]);
  let valid = true;
  for (const result of results) {
    if (result.status === "fulfilled") continue;
    valid = false;
    if (!reportValidationError(result.reason)) throw result.reason;
  }
  if (!valid) return 2;
  const [ruleSet, filters] = results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as [
    Awaited<ReturnType<typeof loadRuleSetFile>>,
    Awaited<ReturnType<typeof loadFiltersFile>> | null,
  ];
  const enabled = ruleSet.rules.filter((rule) => rule.enabled).length;
  process.stdout.write(
    `${rulesFile}: rule set "${ruleSet.name}" is valid: ${ruleSet.rules.length} rule(s), ${enabled} enabled\n` +
      (filters ? `${values.filters}: ${filters.length} IP filter(s) valid\n` : ""),
  );
  return 0;
}
