import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { ConfigError, defaultConfig, loadConfigFile } from "../config/config.js";
import { isMessageId } from "../mail/message-id.js";
import type { ActionTrace } from "../rules/evaluate.js";
import { SpoolInspector } from "../spool/inspect.js";
import type { MessageArea, SpooledMessage } from "../spool/inspect.js";
import { runRequeue } from "./requeue.js";
import { UsageError, parseCommandLine, parseTimeOption } from "./usage.js";

const HELP = `Usage:
  receiptd messages list [filters] [--json]   the spool's messages, newest received first
  receiptd messages show <id> [--json]        what happened to one message
  receiptd messages export <id>               the message as actions see it (receipt
                                              headers on top), on stdout
  receiptd messages requeue <id>...|--dead    dead letters back into processing on the
                                              running daemon ("receiptd messages requeue
                                              --help")

Reads the spool of a running daemon without stopping it: its lock is not taken and
nothing is written. <id> may be a unique prefix of a message ID.

Where the spool is (default: the example configuration's, ./data/spool):
  --config <file>           the daemon's configuration (its spool.dir)
  --spool <dir>             the spool directory itself

Filters of list (all must match):
  --id <prefix>             message ID prefix
  --from <addr|@domain>     envelope sender (MAIL FROM), case-insensitive
  --to <addr|@domain>       an accepted recipient (RCPT TO), case-insensitive
  --rule <name>             a rule that matched (known once processing ended)
  --state queued|done|dead  where the message is
  --since <time>            received at or after: ISO 8601, or a duration before now
                            (90s, 30m, 2h, 7d)
  --until <time>            received before, same forms

Exit codes: 0 found, 1 no such message (show, export), 2 bad usage.
`;

const OPTIONS = {
  config: { type: "string" },
  spool: { type: "string" },
  id: { type: "string" },
  from: { type: "string" },
  to: { type: "string" },
  rule: { type: "string" },
  state: { type: "string" },
  since: { type: "string" },
  until: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

const STATES: readonly MessageArea[] = ["queued", "done", "dead"];
const parseTime = (option: string, text: string): number => parseTimeOption(option, text, HELP);

function addressMatches(pattern: string, address: string): boolean {
  const wanted = pattern.toLowerCase();
  const actual = address.toLowerCase();
  return wanted.startsWith("@") ? actual.endsWith(wanted) : actual === wanted;
}

type Values = ReturnType<typeof parseCommandLine<typeof OPTIONS>>["values"];

function listFilter(values: Values): (message: SpooledMessage) => boolean {
  const state = values.state;
  if (state !== undefined && !STATES.includes(state as MessageArea)) {
    throw new UsageError(`--state "${state}": expected queued, done or dead`, HELP);
  }
  const since = values.since === undefined ? null : parseTime("since", values.since);
  const until = values.until === undefined ? null : parseTime("until", values.until);
  const { id, from, to, rule } = values;
  return (message) => {
    const { state: stored } = message;
    const received = Date.parse(stored.receivedAt);
    return (
      (id === undefined || stored.messageId.startsWith(id.toLowerCase())) &&
      (from === undefined || addressMatches(from, stored.envelope.mailFrom)) &&
      (to === undefined || stored.envelope.recipients.some((recipient) => addressMatches(to, recipient))) &&
      (rule === undefined || (message.trace?.rules.some((matched) => matched.name === rule) ?? false)) &&
      (state === undefined || message.area === state) &&
      (since === null || received >= since) &&
      (until === null || received < until)
    );
  };
}

interface Where {
  spool: string;
  /** Where failure DSNs are written, when the configuration says they go to files. */
  outbox: string | null;
}

async function whereFrom(values: Values): Promise<Where> {
  if (values.spool !== undefined) {
    if (values.config !== undefined) throw new UsageError("give --config or --spool, not both", HELP);
    return { spool: values.spool, outbox: null };
  }
  const config = values.config === undefined ? await defaultConfig() : await loadConfigFile(values.config);
  return { spool: config.serve.spool.dir, outbox: config.backends.Bounce === "outbox" ? join(config.dataDir, "outbox") : null };
}

/** The outbox file of the message's failure DSN, known by the Message-ID the processor gives it. */
async function outboxDsn(outbox: string | null, id: string): Promise<string | null> {
  if (outbox === null) return null;
  let names: string[];
  try {
    names = await readdir(outbox);
  } catch {
    return null;
  }
  const messageId = `<${id}.failure@`;
  for (const name of names.filter((entry) => entry.endsWith(".eml") && !entry.startsWith(".")).sort()) {
    const file = join(outbox, name);
    const text = await readFile(file, "latin1").catch(() => "");
    if (text.includes(messageId)) return file;
  }
  return null;
}

function summary(message: SpooledMessage): Record<string, unknown> {
  const { state, trace } = message;
  return {
    messageId: state.messageId,
    state: message.area,
    receivedAt: state.receivedAt,
    finishedAt: message.finishedAt,
    mailFrom: state.envelope.mailFrom,
    recipients: state.envelope.recipients,
    rules: trace?.rules.map((rule) => rule.name) ?? [],
    end: trace?.end ?? null,
    deadReason: message.deadReason,
    dsnNotSent: message.dsnNotSent,
  };
}

function listLine(message: SpooledMessage): string {
  const { state, trace } = message;
  const rules = trace ? ` [${trace.rules.map((rule) => rule.name).join(", ")}]` : "";
  return `${state.receivedAt}  ${message.area.padEnd(6)}  ${state.messageId}  <${state.envelope.mailFrom}> -> ${state.envelope.recipients.join(", ")}${rules}`;
}

function actionLine(action: ActionTrace): string {
  const params = JSON.stringify(action.params);
  let line = `    ${action.type} ${params}: ${action.outcome}`;
  if (action.outcome === "failed") line += ` (${action.failure}): ${action.error}`;
  if (action.disposition !== undefined) line += `, disposition ${action.disposition ?? "none"}`;
  if (action.detail) line += ` ${JSON.stringify(action.detail)}`;
  return line;
}

/** What the spool knows of the DSN: it keeps no record of the send itself (the daemon logs it). */
function dsnText(message: SpooledMessage, outboxFile: string | null): string {
  if (message.area !== "dead") return "none (a failure DSN goes out only for a dead letter, docs/behaviour.md §8)";
  if (message.state.envelope.mailFrom === "") return "none: the sender is null";
  if (message.dsnNotSent !== null) return `none: ${message.dsnNotSent}`;
  if (outboxFile !== null) return `a failure DSN to <${message.state.envelope.mailFrom}>, written to ${outboxFile}`;
  return `a failure DSN to <${message.state.envelope.mailFrom}> is sent on dead-lettering; whether it was delivered is in the daemon's log (processing.dsn-sent, processing.dsn-failed), not in the spool`;
}

function showText(message: SpooledMessage, ruleSet: string | null, dsn: string): string {
  const { state, trace } = message;
  const v = state.verdicts;
  const lines = [
    `Message   ${state.messageId}`,
    `State     ${message.area}${message.finishedAt ? ` since ${message.finishedAt}` : ""}${message.deadReason ? `: ${message.deadReason}` : ""}`,
    `Received  ${state.receivedAt}`,
    `Envelope  MAIL FROM:<${state.envelope.mailFrom}>`,
    ...state.envelope.recipients.map((recipient) => `          RCPT TO:<${recipient}>`),
    `Client    ${state.client.ip}, HELO ${state.client.helo}, reverse DNS ${state.client.reverseDns ?? "none"}`,
    `TLS       ${state.client.tls ? "yes" : "no"}`,
    `Verdicts  SPF ${v.spf}, DKIM ${v.dkim}, DMARC ${v.dmarc}${v.dmarcPolicy ? ` (policy ${v.dmarcPolicy})` : ""}, spam ${message.scan?.spam ?? v.spam}, virus ${message.scan?.virus ?? v.virus}`,
    ...(message.scan?.detail ? [`Scanned   ${Object.entries(message.scan.detail).map(([engine, detail]) => `${engine}: ${detail}`).join("; ")}`] : []),
    `Rule set  ${ruleSet === null ? "(snapshot no longer in the spool)" : `"${ruleSet}"`} snapshot ${state.snapshot}`,
  ];
  if (trace) {
    lines.push(`Evaluation ${trace.end}`);
    for (const rule of trace.rules) {
      lines.push(`  rule "${rule.name}" (#${rule.index}) for ${rule.recipients.join(", ")}${rule.stop ? `, stopped by ${rule.stop}` : ""}`);
      lines.push(...rule.actions.map(actionLine));
    }
  } else {
    lines.push(`Evaluation ${message.area === "queued" ? "not finished" : "none (the message was not evaluated)"}`);
  }
  lines.push(`Journal   ${message.journal.length} action(s) recorded done`);
  if (message.area === "queued") {
    for (const outcome of message.journal) lines.push(`    done${outcome.status === "done" && outcome.detail ? ` ${JSON.stringify(outcome.detail)}` : ""}`);
  }
  lines.push(
    "Attempts  not recorded in the spool; each retry is in the daemon's log (processing.retry-scheduled)",
    `DSN       ${dsn}`,
  );
  return `${lines.join("\n")}\n`;
}

/** A full message ID, or the one message whose ID starts with `text`. */
async function resolveId(inspector: SpoolInspector, text: string): Promise<string | null> {
  if (isMessageId(text)) return text;
  if (!/^[0-9a-v]+$/.test(text)) throw new UsageError(`"${text}" is not a message ID or the start of one`, HELP);
  const matches = (await inspector.list()).filter((message) => message.state.messageId.startsWith(text));
  if (matches.length > 1) throw new UsageError(`"${text}" starts ${matches.length} message IDs; give more of it`, HELP);
  return matches[0]?.state.messageId ?? null;
}

export async function runMessages(args: string[]): Promise<number> {
  // requeue talks to the running daemon, not to the spool: it has options of its own.
  if (args[0] === "requeue") return runRequeue(args.slice(1));
  const { values, positionals } = parseCommandLine(args, OPTIONS, HELP);
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const [subcommand, ...operands] = positionals;
  if (subcommand !== "list" && subcommand !== "show" && subcommand !== "export") {
    throw new UsageError(subcommand === undefined ? "messages needs list, show, export or requeue" : `unknown messages subcommand "${subcommand}"`, HELP);
  }
  const filterOptions = (["id", "from", "to", "rule", "state", "since", "until"] as const).filter((name) => values[name] !== undefined);
  if (subcommand !== "list" && filterOptions.length > 0) throw new UsageError(`--${filterOptions[0]} filters list only`, HELP);
  if (subcommand === "export" && values.json) throw new UsageError("export writes the message itself; --json is for list and show", HELP);
  if (subcommand === "list" ? operands.length > 0 : operands.length !== 1) {
    throw new UsageError(subcommand === "list" ? "list takes no operands; filter with options" : `${subcommand} takes one message ID`, HELP);
  }
  const matches = subcommand === "list" ? listFilter(values) : null;
  let where: Where;
  try {
    where = await whereFrom(values);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`${error.message}\n`);
    return 2;
  }
  const inspector = new SpoolInspector(where.spool);

  if (matches) {
    for (const message of (await inspector.list()).filter(matches)) {
      process.stdout.write(values.json ? `${JSON.stringify(summary(message))}\n` : `${listLine(message)}\n`);
    }
    return 0;
  }
  const id = await resolveId(inspector, operands[0]!);
  const notFound = () => {
    process.stderr.write(`receiptd: no message ${operands[0]} in the spool ${where.spool}\n`);
    return 1;
  };
  if (id === null) return notFound();
  if (subcommand === "export") {
    const bytes = await inspector.export(id);
    if (!bytes) return notFound();
    process.stdout.write(bytes);
    return 0;
  }
  const message = await inspector.find(id);
  if (!message) return notFound();
  const ruleSet = (await inspector.snapshotRuleSet(message.state.snapshot))?.name ?? null;
  const dsn = dsnText(message, message.area === "dead" ? await outboxDsn(where.outbox, id) : null);
  process.stdout.write(values.json ? `${JSON.stringify({ ...message, ruleSet, dsn })}\n` : showText(message, ruleSet, dsn));
  return 0;
}
