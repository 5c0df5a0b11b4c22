import type { ActionTrace, RuleTrace } from "../rules/evaluate.js";
import type { ReplayOutcome, ReplayResult } from "./replay.js";

/** One action as replay prints it: type and outcome, then the action's own SES fields. */
function actionJson(action: ActionTrace): Record<string, unknown> {
  const json: Record<string, unknown> = { type: action.type, outcome: action.outcome, ...action.params };
  if (action.disposition !== undefined) json.disposition = action.disposition;
  if (action.failure) json.failure = action.failure;
  if (action.error) json.error = action.error;
  if (action.detail) json.detail = action.detail;
  return json;
}

function ruleJson(rule: RuleTrace): Record<string, unknown> {
  return { name: rule.name, recipients: rule.recipients, actions: rule.actions.map(actionJson), stop: rule.stop };
}

/** The `--json` line of one message: the shape documented in the README. */
export function replayJson(outcome: ReplayOutcome): Record<string, unknown> {
  if ("error" in outcome) return { file: outcome.file, error: outcome.error };
  return {
    file: outcome.file,
    messageId: outcome.messageId,
    envelope: { mailFrom: outcome.envelope.mailFrom, recipients: outcome.envelope.recipients },
    ipFilter: outcome.ipFilter,
    accepted: outcome.accepted,
    refused: outcome.refused,
    rules: outcome.trace?.rules.map(ruleJson) ?? [],
  };
}

const MARK: Record<ActionTrace["outcome"], string> = { done: "+", skipped: "-", failed: "!" };

function actionSummary(action: ActionTrace, messageId: string): string {
  switch (action.type) {
    case "S3":
      return `S3 s3://${action.params.BucketName}/${String(action.detail?.objectKey ?? `${action.params.ObjectKeyPrefix ?? ""}${messageId}`)}`;
    case "SNS":
      return `SNS ${action.params.TopicArn} (${action.params.Encoding ?? "UTF-8"})`;
    case "Lambda": {
      const invocation = action.params.InvocationType ?? "Event";
      const answer = action.disposition === undefined ? "" : ` -> ${action.disposition ?? "no disposition"}`;
      return `Lambda ${action.params.FunctionArn} (${invocation})${answer}`;
    }
    case "Bounce": {
      const to = action.detail && "dsnTo" in action.detail ? (action.detail.dsnTo ?? "nobody: null sender") : "the sender";
      return `Bounce ${action.params.SmtpReplyCode} ${action.params.StatusCode ?? ""} "${action.params.Message}" to ${String(to)}`;
    }
    case "AddHeader":
      return `AddHeader ${action.params.HeaderName}: ${action.params.HeaderValue}`;
    case "Stop":
      return "Stop";
    case "WorkMail":
      return `WorkMail ${action.params.OrganizationArn}`;
    case "Connect":
      return `Connect ${action.params.InstanceARN} (role ${action.params.IAMRoleARN})`;
  }
}

/** The human-readable trace of one message. */
export function replayText(outcome: ReplayOutcome): string {
  if ("error" in outcome) return `${outcome.file}\n  error: ${outcome.error}\n`;
  const lines = [`${outcome.file}  ${outcome.messageId}`];
  const { envelope } = outcome;
  lines.push(`  envelope: from <${envelope.mailFrom}> to ${envelope.recipients.join(", ") || "(no recipients)"}`);
  if (outcome.ipFilter.decision !== "none") lines.push(`  ip filter: ${outcome.ipFilter.decision} (${outcome.ipFilter.filter})`);
  for (const { recipient, reply } of outcome.refused) lines.push(`  refused ${recipient}: ${reply}`);
  if (outcome.accepted.length === 0) lines.push("  nothing accepted: no rule runs");
  else if (outcome.trace?.rules.length === 0) lines.push("  no rule matched");
  for (const rule of outcome.trace?.rules ?? []) {
    lines.push(`  rule ${rule.name} for ${rule.recipients.join(", ")}`);
    for (const action of rule.actions) {
      const notified = action.detail?.notification as { topicArn?: string } | undefined;
      const notification = notified?.topicArn ? `, notifies ${notified.topicArn}` : "";
      const failure = action.outcome === "failed" ? `: ${action.failure} failure: ${action.error}` : "";
      lines.push(`    ${MARK[action.outcome]} ${actionSummary(action, outcome.messageId)}${notification}${failure}`);
    }
    if (rule.stop) lines.push(`    stopped by ${rule.stop === "Stop" ? "a Stop action" : rule.stop}`);
  }
  return `${lines.join("\n")}\n`;
}

function hasFailedAction(outcome: ReplayResult): boolean {
  return outcome.trace?.rules.some((rule) => rule.actions.some((action) => action.outcome === "failed")) ?? false;
}

export class ReplaySummary {
  messages = 0;
  errors = 0;
  accepted = 0;
  refused = 0;
  /** Messages with an action that failed. */
  failed = 0;
  private readonly ruleHits = new Map<string, number>();

  add(outcome: ReplayOutcome): void {
    this.messages++;
    if ("error" in outcome) {
      this.errors++;
      return;
    }
    this.accepted += outcome.accepted.length;
    this.refused += outcome.refused.length;
    if (hasFailedAction(outcome)) this.failed++;
    for (const rule of (outcome as ReplayResult).trace?.rules ?? []) {
      this.ruleHits.set(rule.name, (this.ruleHits.get(rule.name) ?? 0) + 1);
    }
  }

  toString(): string {
    const hits = [...this.ruleHits].map(([name, count]) => `  ${name}: ${count}`).join("\n");
    return (
      `${this.messages} message(s): ${this.accepted} recipient(s) accepted, ${this.refused} refused, ` +
      `${this.errors} unreadable, ${this.failed} with a failed action\n` +
      (hits ? `rules matched (messages):\n${hits}\n` : "no rule matched\n")
    );
  }
}
