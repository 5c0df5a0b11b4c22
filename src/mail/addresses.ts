import libmime from "libmime";
import addressparser from "nodemailer/lib/addressparser";
import type { MailboxAddress } from "nodemailer/lib/addressparser";

const DQUOTE = 0x22;
const BACKSLASH = 0x5c;

interface Entry {
  /** The entry as written, trimmed. */
  text: string;
  /** A group (`name: members;`), kept whole as one entry. */
  group: boolean;
  /** Display-name text stands before an angle address. */
  phrase: boolean;
}

/**
 * Splits an address-list header value at its top-level commas: commas inside quoted strings,
 * comments, angle addresses and groups do not separate entries.
 */
function splitEntries(value: string): Entry[] {
  const entries: Entry[] = [];
  let start = 0;
  let quoted = false;
  let comment = 0;
  let angle = false;
  let sawAngle = false;
  let group = false;
  let groupOpen = false;
  let phrase = false;

  const push = (end: number): void => {
    const text = value.slice(start, end).trim();
    if (text !== "") entries.push({ text, group, phrase: phrase && sawAngle });
    angle = sawAngle = group = groupOpen = phrase = false;
  };

  for (let i = 0; i < value.length; i++) {
    const ch = value[i];
    if (quoted || comment > 0) {
      if (value.charCodeAt(i) === BACKSLASH) {
        i++;
        if (quoted && !sawAngle) phrase = true;
      } else if (quoted) {
        if (value.charCodeAt(i) === DQUOTE) quoted = false;
        else if (!sawAngle && ch !== " " && ch !== "\t") phrase = true;
      } else if (ch === "(") comment++;
      else if (ch === ")") comment--;
      continue;
    }
    switch (ch) {
      case '"':
        quoted = true;
        break;
      case "(":
        comment = 1;
        break;
      case "<":
        angle = sawAngle = true;
        break;
      case ">":
        angle = false;
        break;
      case ":":
        if (!angle && !group) group = groupOpen = true;
        break;
      case ";":
        if (!angle) groupOpen = false;
        break;
      case ",":
        if (!angle && !groupOpen) {
          push(i);
          start = i + 1;
        }
        break;
      case " ":
      case "\t":
        break;
      default:
        if (!sawAngle) phrase = true;
    }
  }
  push(value.length);
  return entries;
}

/** Characters that force a display name into a quoted string (RFC 5322 specials, bar WSP). */
const PHRASE_SPECIALS = '()<>@,;:".[]';

function quotePhrase(name: string): string {
  let needsQuotes = false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c === DQUOTE || c === BACKSLASH) return `"${name.replace(/["\\]/g, "\\$&")}"`;
    if ((c < 0x20 && c !== 0x09) || c >= 0x7f || PHRASE_SPECIALS.includes(name[i] as string)) needsQuotes = true;
  }
  return needsQuotes ? `"${name}"` : name;
}

const NOT_SIMPLE = /[()<>,;:\\"[\]]/;

/** Decodes RFC 2047 encoded-words; text without any is returned as it is, at no cost. */
export function decodeEncodedWords(text: string): string {
  return text.includes("=?") ? libmime.decodeWords(text) : text;
}

/**
 * The entries of an address-list header the way SES shows them in `commonHeaders`: one string
 * per mailbox, the display name decoded (RFC 2047) and quoted only where it has to be, the
 * address in angle brackets after it. SES's examples show `"John Doe" <john@example.com>` as
 * `John Doe <john@example.com>` while `"Doe, John"` and a name that is an address keep their
 * quotes, and a non-ASCII name gets quotes. Groups, and entries that hold no address, are
 * kept as written.
 */
export function displayAddresses(value: string): string[] {
  const out: string[] = [];
  for (const entry of splitEntries(value)) {
    if (entry.group) {
      out.push(entry.text);
      continue;
    }
    const parsed = mailboxesOf(entry);
    const rendered: string[] = [];
    for (const mailbox of parsed) {
      if (mailbox.address === "") break;
      // addressparser drops a display name that equals the address; SES keeps it.
      const name = mailbox.name !== "" ? decodeEncodedWords(mailbox.name) : entry.phrase ? mailbox.address : "";
      if (name !== "") rendered.push(`${quotePhrase(name)} <${mailbox.address}>`);
      else rendered.push(NOT_SIMPLE.test(mailbox.address) ? `<${mailbox.address}>` : mailbox.address);
    }
    if (rendered.length === parsed.length && rendered.length > 0) out.push(...rendered);
    else out.push(entry.text);
  }
  return out;
}

function isAddress(address: string): boolean {
  const at = address.lastIndexOf("@");
  return at > 0 && at < address.length - 1;
}

/**
 * Bare addresses separated by whitespace instead of commas, a common breakage that addressparser
 * would read as one address with the rest for its display name. The classes exclude whitespace,
 * so the pattern cannot backtrack.
 */
const SPACE_SEPARATED = /^[^\s"(),:;<>@]+@[^\s"(),:;<>@]+(?:\s+[^\s"(),:;<>@]+@[^\s"(),:;<>@]+)+$/;

function mailboxesOf(entry: Entry): MailboxAddress[] {
  if (SPACE_SEPARATED.test(entry.text)) return entry.text.split(/\s+/).map((address) => ({ name: "", address }));
  return addressparser(entry.text, { flatten: true });
}

/**
 * `local@domain` or `Plain Name <local@domain>`: most entries by far, answered without the
 * general parser (replay reads the envelope of every message from its headers).
 */
const SIMPLE_MAILBOX = /^(?:[^"(),:;<>@\\[\]]*<)?([^\s"(),:;<>@\\[\]]+@[^\s"(),:;<>@\\[\]]+)>?$/;

/** The bare addresses (`local@domain`) of an address-list header, group members included. */
export function bareAddresses(value: string): string[] {
  const out: string[] = [];
  for (const entry of splitEntries(value)) {
    const simple = SIMPLE_MAILBOX.exec(entry.text);
    if (simple && (entry.text.endsWith(">") === entry.text.includes("<"))) {
      out.push(simple[1] as string);
      continue;
    }
    for (const { address } of mailboxesOf(entry)) if (isAddress(address)) out.push(address);
  }
  return out;
}

/** Removes later duplicates, comparing case-insensitively; the first spelling stays. */
export function dedupeAddresses(addresses: readonly string[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const address of addresses) {
    const key = address.toLowerCase();
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(address);
  }
  return out;
}
