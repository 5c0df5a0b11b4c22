import { open, rename } from "node:fs/promises";
import { ConfigError, defaultConfig, loadConfigFile } from "../config/config.js";
import type { ReceiptdConfig } from "../config/config.js";
import { loadFiltersFile, loadRuleSetFile } from "../config/rule-files.js";
import { RuleSetValidationError } from "../rules/parse.js";
import { ReceiptApiError, activeRuleSet, describeReceiptRuleSet, toDescribeJson, toFiltersJson } from "../rules/store.js";
import { openFileStore, readFileStore } from "../store/file-store.js";
import { importFiles } from "../store/import.js";
import type { AuditRecord, Scope } from "../store/store.js";
import { UsageError, parseCommandLine, parseTimeOption } from "./usage.js";

const HELP = `Usage:
  receiptd state export [--rules <file>] [--filters <file>] [--rule-set <name>]
      the active rule set (or the named one) as "aws ses describe-active-receipt-rule-set"
      JSON, and the IP filters as "aws ses list-receipt-filters" JSON: the files of file
      mode. Without --rules or --filters, the rule set goes to stdout.
  receiptd state import --rules <file> [--filters <file>]
      the rule set replaces the set of its name and becomes active; the filters, if given,
      replace the filters. The daemon must be stopped (its store is locked while it runs);
      with it running, change the state through the SES API.
  receiptd state audit [--since <time>] [--limit <n>] [--json]
      who changed what and when, oldest first: every change's time, origin (api, file,
      import, verifier), operation, access key, address and what it named.

export and audit read the store of a running daemon without disturbing it.

Common options:
  --config <file>      the daemon's configuration (its state.dir, state.account and
                       state.region); default: the example configuration's
  --account <id>       another account's state
  --region <name>      another region's state
`;

const OPTIONS = {
  config: { type: "string" },
  account: { type: "string" },
  region: { type: "string" },
  rules: { type: "string" },
  filters: { type: "string" },
  "rule-set": { type: "string" },
  since: { type: "string" },
  limit: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/** The file appears whole or not at all, and replaces what was there only then. */
async function writeWhole(path: string, text: string): Promise<void> {
  const temporary = `${path}.${process.pid}.tmp`;
  const handle = await open(temporary, "w");
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporary, path);
}

function auditLine(record: AuditRecord): string {
  const who = [record.accessKeyId, record.address].filter(Boolean).join(" from ");
  const target = Object.entries(record.target ?? {})
    .map(([key, value]) => `${key}=${value}`)
    .join(" ");
  return [record.time, `#${record.seq}`, `${record.scope.account}/${record.scope.region}`, record.via, record.operation, who, target]
    .filter((part) => part !== "")
    .join("  ");
}

export async function runState(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(args, OPTIONS, HELP);
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const [command, ...rest] = positionals;
  if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`, HELP);
  let config: ReceiptdConfig;
  try {
    config = values.config === undefined ? await defaultConfig() : await loadConfigFile(values.config);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      return 2;
    }
    throw error;
  }
  const dir = config.serve.state.dir;
  const scope: Scope = { account: values.account ?? config.serve.state.account, region: values.region ?? config.serve.state.region };
  if (!/^\d{12}$/.test(scope.account)) throw new UsageError(`--account "${scope.account}": expected a 12-digit AWS account ID`, HELP);

  switch (command) {
    case "export": {
      const state = await (await readFileStore(dir)).read(scope);
      const name = values["rule-set"];
      let ruleSet;
      try {
        ruleSet = name === undefined ? activeRuleSet(state.receipt) : describeReceiptRuleSet(state.receipt, name);
      } catch (error) {
        if (!(error instanceof ReceiptApiError)) throw error;
        process.stderr.write(`receiptd: ${error.message} (in ${scope.account}/${scope.region}, ${dir})\n`);
        return 1;
      }
      if (!ruleSet && (values.rules !== undefined || values.filters === undefined)) {
        process.stderr.write(`receiptd: no rule set is active in ${scope.account}/${scope.region} (${dir}); name one with --rule-set\n`);
        return 1;
      }
      const rulesText = ruleSet ? `${JSON.stringify(toDescribeJson(ruleSet), null, 2)}\n` : "";
      const filtersText = `${JSON.stringify(toFiltersJson(state.receipt.filters), null, 2)}\n`;
      if (values.rules === undefined && values.filters === undefined) {
        process.stdout.write(rulesText);
        return 0;
      }
      if (values.rules !== undefined) await writeWhole(values.rules, rulesText);
      if (values.filters !== undefined) await writeWhole(values.filters, filtersText);
      process.stdout.write(
        [
          values.rules !== undefined && ruleSet ? `${values.rules}: rule set "${ruleSet.name}", ${ruleSet.rules.length} rule(s)` : "",
          values.filters !== undefined ? `${values.filters}: ${state.receipt.filters.length} IP filter(s)` : "",
        ]
          .filter(Boolean)
          .map((line) => `${line}\n`)
          .join(""),
      );
      return 0;
    }
    case "import": {
      if (values.rules === undefined) throw new UsageError("state import needs --rules <file>", HELP);
      let ruleSet, filters;
      try {
        ruleSet = await loadRuleSetFile(values.rules);
        filters = values.filters === undefined ? undefined : await loadFiltersFile(values.filters);
      } catch (error) {
        if (!(error instanceof RuleSetValidationError)) throw error;
        process.stderr.write(`${error.message}\n`);
        return 2;
      }
      let store;
      try {
        store = await openFileStore({ dir });
      } catch (error) {
        process.stderr.write(`receiptd: ${(error as Error).message}: stop the daemon first, or change the state through the SES API\n`);
        return 1;
      }
      try {
        const origin = { via: "import" as const, operation: "StateImport", target: { RuleSetName: ruleSet.name, file: values.rules } };
        await store.update(scope, origin, (state) => ({
          state: importFiles(state, { ruleSet, ...(filters ? { filters } : {}) }, new Date()),
          result: undefined,
        }));
      } finally {
        await store.close();
      }
      process.stdout.write(
        `imported rule set "${ruleSet.name}" (${ruleSet.rules.length} rule(s)), now active` +
          (filters ? `, and ${filters.length} IP filter(s)` : "") +
          ` into ${scope.account}/${scope.region} (${dir})\n`,
      );
      return 0;
    }
    case "audit": {
      const limit = values.limit === undefined ? undefined : Number(values.limit);
      if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) throw new UsageError(`--limit "${values.limit}": expected a positive integer`, HELP);
      const records = await (await readFileStore(dir)).audit({
        scope,
        ...(values.since === undefined ? {} : { since: new Date(parseTimeOption("since", values.since, HELP)) }),
        ...(limit === undefined ? {} : { limit }),
      });
      process.stdout.write(records.map((record) => `${values.json ? JSON.stringify(record) : auditLine(record)}\n`).join(""));
      return 0;
    }
    case undefined:
      throw new UsageError("state needs a command: export, import or audit", HELP);
    default:
      throw new UsageError(`unknown state command "${command}"`, HELP);
  }
}
