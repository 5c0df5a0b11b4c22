import { ConfigError, defaultConfig, loadConfigFile } from "../config/config.js";
import { isMessageId } from "../mail/message-id.js";
import type { RequeueRequest, RequeueResult } from "../ops/admin.js";
import { UsageError, parseCommandLine, parseTimeOption } from "./usage.js";

const HELP = `Usage:
  receiptd messages requeue <id>... [options]
  receiptd messages requeue --dead [--since <time>] [options]

Puts dead letters back into processing on the running daemon, through its admin port.
Processing resumes at the action that failed: an action the journal records as done does not
run again. A message that is not dead (queued, done, or unknown) is refused and the others
go on.

Options:
  --dead                    every dead letter (oldest first)
  --since <time>            with --dead: received at or after, ISO 8601 or a duration
                            before now (90s, 30m, 2h, 7d)
  --active-rule-set         evaluate under the rule set active now instead of the one each
                            message was accepted under; refused for a message with actions
                            already done (they belong to its own rule set)
  --config <file>           the daemon's configuration: its admin address and admin.token
                            (default: the example configuration's)
  --json                    the daemon's answer as JSON

The admin port takes requeues from loopback addresses, or with admin.token (also read from
RECEIPTD_ADMIN_TOKEN) as a Bearer token.

Exit codes: 0 every message requeued, 1 some refused, 2 bad usage, 3 the daemon could not
be reached.
`;

const OPTIONS = {
  dead: { type: "boolean" },
  since: { type: "string" },
  "active-rule-set": { type: "boolean" },
  config: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

export async function runRequeue(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(args, OPTIONS, HELP);
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (values.dead === true && positionals.length > 0) throw new UsageError("give message IDs or --dead, not both", HELP);
  if (!values.dead && positionals.length === 0) throw new UsageError("requeue needs message IDs or --dead", HELP);
  if (values.since !== undefined && !values.dead) throw new UsageError("--since goes with --dead", HELP);
  const bad = positionals.find((id) => !isMessageId(id));
  if (bad !== undefined) throw new UsageError(`"${bad}" is not a message ID (40 characters of 0-9 and a-v)`, HELP);
  let config;
  try {
    config = values.config === undefined ? await defaultConfig() : await loadConfigFile(values.config);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`${error.message}\n`);
    return 2;
  }
  const admin = config.serve.admin;
  if (!admin) {
    process.stderr.write("receiptd: the configuration turns the admin port off (admin: null); requeue goes through it\n");
    return 2;
  }
  const request: RequeueRequest = values.dead
    ? { dead: true, ...(values.since === undefined ? {} : { since: new Date(parseTimeOption("since", values.since, HELP)).toISOString() }) }
    : { ids: positionals };
  if (values["active-rule-set"]) request.activeRuleSet = true;
  const token = admin.token ?? process.env.RECEIPTD_ADMIN_TOKEN;
  // A wildcard listen address is reached on loopback.
  const host = admin.host === "0.0.0.0" || admin.host === "::" ? "127.0.0.1" : admin.host.includes(":") ? `[${admin.host}]` : admin.host;
  const url = `http://${host}:${admin.port}/messages/requeue`;
  let response: Response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(request),
    });
  } catch (error) {
    process.stderr.write(`receiptd: cannot reach the daemon's admin port at ${url}: ${(error as Error).message}\n`);
    return 3;
  }
  const text = await response.text();
  if (!response.ok) {
    process.stderr.write(`receiptd: the daemon refused the requeue (${response.status}): ${text}`);
    return response.status === 400 ? 2 : 3;
  }
  const result = JSON.parse(text) as RequeueResult;
  if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else {
    for (const id of result.requeued) process.stdout.write(`requeued  ${id}\n`);
    for (const { id, reason } of result.refused) process.stdout.write(`refused   ${id}: ${reason}\n`);
    if (result.requeued.length + result.refused.length === 0) process.stdout.write("no dead letter to requeue\n");
  }
  return result.refused.length > 0 ? 1 : 0;
}
