import type { Header } from "../rules/model.js";

export interface TraceInput {
  mailFrom: string;
  helo: string;
  reverseDns: string | null;
  ip: string;
  hostname: string;
  messageId: string;
  firstRecipient: string;
  receivedAt: Date;
}

/** RFC 5322 section 3.3 in UTC, with the `(UTC)` comment SES writes: `Fri, 11 Sep 2015 20:32:33 +0000 (UTC)`. */
export function receivedDate(date: Date): string {
  return date.toUTCString().replace(/GMT$/, "+0000 (UTC)");
}

/** The two trace headers of docs/behaviour.md §5, top first. */
export function traceHeaders(input: TraceInput): Header[] {
  return [
    { name: "Return-Path", value: `<${input.mailFrom}>` },
    {
      name: "Received",
      value:
        `from ${input.helo} (${input.reverseDns ?? "unknown"} [${input.ip}]) by ${input.hostname}` +
        ` with SMTP id ${input.messageId} for ${input.firstRecipient}; ${receivedDate(input.receivedAt)}`,
    },
  ];
}
