import { CHANGE_KINDS, rulesInvolved } from "./diff.js";
import type { ChangeKind, MessageChange, StopPoint } from "./diff.js";

export interface MessageDiff {
  file: string;
  messageId: string;
  changes: MessageChange[];
}

function params(fields: Record<string, string>): string {
  return Object.entries(fields)
    .map(([field, value]) => `${field}=${value}`)
    .join(" ");
}

function stopText(point: StopPoint | null): string {
  if (!point) return "runs to the end";
  const by = point.stop === "Stop" ? "a Stop action" : point.stop;
  return `stops in rule ${point.rule} at action ${point.action + 1} (${by})`;
}

function changeText(change: MessageChange): string {
  switch (change.kind) {
    case "recipient":
    case "tls":
      return `${change.kind} ${change.recipient}: ${change.before} -> ${change.after}`;
    case "rules-matched": {
      const parts = [
        ...(change.added.length ? [`added ${change.added.join(", ")}`] : []),
        ...(change.removed.length ? [`removed ${change.removed.join(", ")}`] : []),
      ];
      const how = parts.length ? parts.join("; ") : "reordered";
      return `rules matched: ${change.before.join(", ") || "(none)"} -> ${change.after.join(", ") || "(none)"} (${how})`;
    }
    case "action":
      if (change.change === "parameters") {
        const fields = change.params.map((p) => `${p.field}: ${p.before ?? "(unset)"} -> ${p.after ?? "(unset)"}`);
        return `action in rule ${change.rule}: ${change.type} ${fields.join(", ")}`;
      }
      return `action in rule ${change.rule}: ${change.change} ${change.type} ${params(change.params)}`.trimEnd();
    case "stop":
      return `stop: ${stopText(change.before)} -> ${stopText(change.after)}`;
  }
}

/** The human-readable changes of one message. */
export function diffText(diff: MessageDiff): string {
  return `${diff.file}  ${diff.messageId}\n${diff.changes.map((change) => `  ${changeText(change)}\n`).join("")}`;
}

/** The `--json` line of one changed message: the shape documented in the README. */
export function diffJson(diff: MessageDiff): Record<string, unknown> {
  return { file: diff.file, messageId: diff.messageId, changes: diff.changes };
}

export class DiffSummary {
  messages = 0;
  changed = 0;
  errors = 0;
  /** Messages with at least one change of each kind. */
  readonly byKind = new Map<ChangeKind, number>(CHANGE_KINDS.map((kind) => [kind, 0]));
  /** Messages in which each rule is involved in a change. */
  private readonly rules = new Map<string, number>();

  addError(): void {
    this.messages++;
    this.errors++;
  }

  add(diff: MessageDiff): void {
    this.messages++;
    if (diff.changes.length === 0) return;
    this.changed++;
    for (const kind of new Set(diff.changes.map((change) => change.kind))) this.byKind.set(kind, this.byKind.get(kind)! + 1);
    for (const rule of new Set(diff.changes.flatMap(rulesInvolved))) this.rules.set(rule, (this.rules.get(rule) ?? 0) + 1);
  }

  toString(): string {
    const kinds = [...this.byKind].map(([kind, count]) => `${kind} ${count}`).join(", ");
    const rules = [...this.rules]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([name, count]) => `  ${name}: ${count}`)
      .join("\n");
    return (
      `${this.messages} message(s) compared: ${this.changed} changed, ${this.errors} unreadable\n` +
      (this.changed ? `changes (messages): ${kinds}\nrules involved (messages):\n${rules || "  (none)"}\n` : "")
    );
  }
}
