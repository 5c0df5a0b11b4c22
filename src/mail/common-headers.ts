import type { Header } from "../rules/model.js";
import { bareAddresses, decodeEncodedWords, dedupeAddresses, displayAddresses } from "./addresses.js";

/** SES's `mail.commonHeaders`; a field is present only when the message has that header. */
export interface CommonHeaders {
  returnPath?: string;
  from?: string[];
  sender?: string[];
  replyTo?: string[];
  date?: string;
  to?: string[];
  cc?: string[];
  bcc?: string[];
  messageId?: string;
  subject?: string;
}

type ListField = "from" | "sender" | "replyTo" | "to" | "cc" | "bcc";

const LIST_FIELDS: ReadonlyMap<string, ListField> = new Map([
  ["from", "from"],
  ["sender", "sender"],
  ["reply-to", "replyTo"],
  ["to", "to"],
  ["cc", "cc"],
  ["bcc", "bcc"],
]);

/** `<addr>` gives `addr`, `<>` gives "", and anything unparsable is kept, trimmed of its brackets. */
function returnPathAddress(value: string): string {
  const [first] = bareAddresses(value);
  if (first !== undefined) return first;
  const trimmed = value.trim();
  return trimmed.startsWith("<") && trimmed.endsWith(">") ? trimmed.slice(1, -1).trim() : trimmed;
}

/**
 * Builds `commonHeaders`. Address lists gather every occurrence of their header; the single
 * valued fields take the first occurrence (the top-most, e.g. the latest Return-Path).
 */
export function commonHeaders(headers: readonly Header[]): CommonHeaders {
  const lists: Partial<Record<ListField, string[]>> = {};
  let returnPath: string | undefined;
  let date: string | undefined;
  let messageId: string | undefined;
  let subject: string | undefined;
  for (const { name, value } of headers) {
    const lower = name.toLowerCase();
    const list = LIST_FIELDS.get(lower);
    if (list !== undefined) (lists[list] ??= []).push(...displayAddresses(value));
    else if (lower === "return-path") returnPath ??= returnPathAddress(value);
    else if (lower === "date") date ??= value;
    else if (lower === "message-id") messageId ??= value.trim();
    else if (lower === "subject") subject ??= decodeEncodedWords(value);
  }
  // Key order as in SES's notifications (returnPath, from, replyTo, date, to, messageId,
  // subject), with sender, cc and bcc next to their kin.
  const out: CommonHeaders = {};
  if (returnPath !== undefined) out.returnPath = returnPath;
  if (lists.from) out.from = lists.from;
  if (lists.sender) out.sender = lists.sender;
  if (lists.replyTo) out.replyTo = lists.replyTo;
  if (date !== undefined) out.date = date;
  if (lists.to) out.to = lists.to;
  if (lists.cc) out.cc = lists.cc;
  if (lists.bcc) out.bcc = lists.bcc;
  if (messageId !== undefined) out.messageId = messageId;
  if (subject !== undefined) out.subject = subject;
  return out;
}

/** `mail.destination`: the bare addresses of To and Cc, spelled as written, without repeats. */
export function destinationAddresses(headers: readonly Header[]): string[] {
  const all: string[] = [];
  for (const { name, value } of headers) {
    const lower = name.toLowerCase();
    if (lower === "to" || lower === "cc") all.push(...bareAddresses(value));
  }
  return dedupeAddresses(all);
}
