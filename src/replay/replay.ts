import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readFile, readdir, stat } from "node:fs/promises";
import { hostname as osHostname } from "node:os";
import { join } from "node:path";
import { bufferMessage } from "../actions/message.js";
import { fileMessage } from "../actions/message.js";
import type { Receipt, ReceivedMessage } from "../actions/message.js";
import { recordingExecutor } from "../actions/record.js";
import { AUTH_DISABLED } from "../mail/auth.js";
import { parseMessageHead, readMessageFile } from "../mail/headers.js";
import type { MessageHead } from "../mail/headers.js";
import { envelopeFromHeaders } from "../mail/envelope.js";
import { messageIdFromBytes } from "../mail/message-id.js";
import { storedMessage, withScanVerdicts } from "../mail/stored.js";
import type { ReceiptFacts } from "../mail/stored.js";
import { REPLIES, decideRecipients } from "../rules/recipient-policy.js";
import type { EnvelopeDecision } from "../rules/recipient-policy.js";
import { evaluate } from "../rules/evaluate.js";
import type { EvaluationTrace } from "../rules/evaluate.js";
import type { ActionExecutor } from "../rules/executor.js";
import { decideIp } from "../rules/filters.js";
import type { CompiledFilters, IpFilterDecision } from "../rules/filters.js";
import type { Envelope, Header, Identities, RuleSet } from "../rules/model.js";
import { readStored, readStoredWhole } from "../spool/format.js";
import type { SpooledMessage } from "../spool/inspect.js";
import { scanVerdict } from "../ses/verdicts.js";
import type { Verdicts } from "../ses/verdicts.js";

export interface ReplaySettings {
  ruleSet: RuleSet;
  filters: CompiledFilters | null;
  identities: Identities;
  /** Envelope sender; taken from the message when absent. */
  mailFrom?: string;
  /** Envelope recipients; taken from the message when absent or empty. */
  recipients?: string[];
  /** The client's address, checked against the IP filters; 127.0.0.1 in Received when absent. */
  clientIp?: string;
  /** The client's EHLO name for Received; `localhost` by default. */
  helo?: string;
  /** Our host name for Received, as the daemon's `hostname`; the machine's name by default. */
  hostname?: string;
  tls: boolean;
  maxRecipients?: number;
  /** Runs the actions; by default every message gets a new recording executor, and nothing runs. */
  executor?: ActionExecutor<ReceivedMessage>;
  /** For the recording executor: what each RequestResponse Lambda returns. */
  lambdaResults?: ReadonlyMap<string, string> | Record<string, string>;
  /** For the recording executor: SES's per-action size limits (default on). */
  strict?: boolean;
  /** The receipt time the events carry; now by default. */
  clock?: () => Date;
}

export interface ReplayResult {
  file: string;
  messageId: string;
  envelope: Envelope;
  ipFilter: IpFilterDecision;
  accepted: string[];
  refused: EnvelopeDecision["refused"];
  /** Null when nothing was accepted, so no rule ran. */
  trace: EvaluationTrace | null;
}

export type ReplayOutcome = ReplayResult | { file: string; error: string };

/**
 * Replay is not receipt, so there is no random ID to draw: the ID is derived from the file
 * name and what was read of it, so that the same replay prints the same IDs (and S3 keys).
 */
function replayMessageId(file: string, head: MessageHead): string {
  const hash = createHash("sha256").update(file).update("\0").update(String(head.size)).update("\0").update(head.headerBlock);
  return messageIdFromBytes(hash.digest());
}

export async function replayMessage(file: string, settings: ReplaySettings): Promise<ReplayResult> {
  const { head, bytes } = await readMessageFile(file, BUFFERED_REPLAY_BYTES);
  return replayHead(file, head, settings, bytes);
}

interface StoredSource {
  envelope: Envelope;
  facts: ReceiptFacts;
  receipt: Receipt;
}

/**
 * A file's stored message, made afresh from the file on every read rather than held: a file may
 * be tens of megabytes. Its size takes one pass; `headerBlock` is its stored header block.
 */
async function storedFileMessage(file: string, headerBlock: Buffer, source: StoredSource): Promise<ReceivedMessage> {
  const open = async function* (): AsyncGenerator<Buffer> {
    const raw = createReadStream(file) as AsyncIterable<Buffer>;
    yield* storedMessage(source.envelope, raw, source.facts).body;
  };
  let size = 0;
  for await (const chunk of open()) size += chunk.length;
  const storedHead = parseMessageHead(headerBlock);
  return { size, headers: storedHead.headers, headerBlock: storedHead.headerBlock, open, ...source.receipt };
}

/**
 * Files up to this size are read whole, in the same open as their head, and made into the
 * stored message once. Streaming them (a pass for the size, another per action that reads) cut
 * bench:replay from 7,168 to 2,774 msg/s at 10 KB; 16 files in flight hold at most 64 MiB so.
 */
const BUFFERED_REPLAY_BYTES = 4 * 1024 * 1024;

/** Replay has no SMTP session or DNS: SPF, DKIM and DMARC are GRAY (not determined). */
function replayVerdicts(scanned: "GRAY" | "DISABLED"): Verdicts {
  return { spam: scanned, virus: scanned, spf: "GRAY", dkim: "GRAY", dmarc: "GRAY" };
}

/**
 * Replays a message whose head is already read: from `bytes` when given, else from the file,
 * streamed through `storedMessage` as the daemon streams DATA.
 */
export async function replayHead(
  file: string,
  head: MessageHead,
  settings: ReplaySettings,
  bytes?: Buffer,
): Promise<ReplayResult> {
  const fromMessage = settings.mailFrom === undefined || !settings.recipients?.length ? envelopeFromHeaders(head.headers) : null;
  const envelope: Envelope = {
    mailFrom: settings.mailFrom ?? fromMessage?.mailFrom ?? "",
    recipients: settings.recipients?.length ? settings.recipients : (fromMessage?.recipients ?? []),
  };
  const messageId = replayMessageId(file, head);
  const { ipFilter, accepted, refused } = decideArrival(envelope.recipients, settings.clientIp, settings.tls, settings);
  if (accepted.length === 0) return { file, messageId, envelope, ipFilter, accepted, refused, trace: null };

  // The message the daemon would have stored: replayed events must match real ones.
  const receivedAt = (settings.clock ?? (() => new Date()))();
  const scanned = scanVerdict(settings.ruleSet, settings.identities, accepted);
  const stored: StoredSource = {
    envelope: { mailFrom: envelope.mailFrom, recipients: accepted },
    facts: {
      messageId,
      receivedAt,
      client: { ip: settings.clientIp ?? "127.0.0.1", helo: settings.helo ?? "localhost", reverseDns: null },
      hostname: settings.hostname ?? osHostname(),
      scan: scanned,
      auth: AUTH_DISABLED,
    },
    receipt: { receivedAt, verdicts: replayVerdicts(scanned) },
  };
  const whole = bytes ?? (head.size <= BUFFERED_REPLAY_BYTES ? await readFile(file) : undefined);
  // From the whole file, or, for a file too large to hold, its header block: that gives the headers
  // on top and the stored header block, and the body streams from the file for each read.
  const made = storedMessage(stored.envelope, whole ?? head.headerBlock, stored.facts);
  const message = whole
    ? bufferMessage(made.body, parseMessageHead(made.body), stored.receipt)
    : await storedFileMessage(file, made.body, stored);
  const trace = await evaluateAccepted(settings, { mailFrom: envelope.mailFrom, recipients: accepted }, messageId, message, await made.headers);
  return { file, messageId, envelope, ipFilter, accepted, refused, trace };
}

/**
 * What the SMTP side answers an arrival under `settings`: the IP filter's decision for the
 * client (none without filters or an address), then each recipient's RCPT TO. A blocked
 * connection is refused before any RCPT, so every recipient shares that answer.
 */
function decideArrival(
  recipients: string[],
  clientIp: string | undefined,
  tls: boolean,
  settings: ReplaySettings,
): { ipFilter: IpFilterDecision; accepted: string[]; refused: EnvelopeDecision["refused"] } {
  const ipFilter: IpFilterDecision = settings.filters && clientIp ? decideIp(settings.filters, clientIp) : { decision: "none", filter: null };
  if (ipFilter.decision === "block") return { ipFilter, accepted: [], refused: recipients.map((recipient) => ({ recipient, reply: REPLIES.accessDenied })) };
  const { accepted, refused } = decideRecipients(recipients, {
    ruleSet: settings.ruleSet,
    identities: settings.identities,
    tls,
    ...(settings.maxRecipients === undefined ? {} : { maxRecipients: settings.maxRecipients }),
  });
  return { ipFilter, accepted, refused };
}

/** Evaluation of what was accepted, with a new recording executor unless one is given. */
function evaluateAccepted(
  settings: ReplaySettings,
  envelope: Envelope,
  messageId: string,
  message: ReceivedMessage,
  prependedHeaders: Header[],
): Promise<EvaluationTrace> {
  const executor =
    settings.executor ??
    recordingExecutor<ReceivedMessage>({
      sizeOf: (m) => m.size,
      ...(settings.lambdaResults ? { lambdaResults: settings.lambdaResults } : {}),
      ...(settings.strict === undefined ? {} : { strict: settings.strict }),
    });
  return evaluate({ ruleSet: settings.ruleSet, identities: settings.identities, envelope, messageId, message, prependedHeaders }, executor);
}

/** How a replayed message is named in results: its file, or its place in the spool. */
export const spoolLabel = (messageId: string): string => `spool:${messageId}`;

/**
 * A message from the spool through `settings`' rule set as it was received: its envelope,
 * client, TLS state, verdicts, receipt headers, ID and time are the stored ones, not rebuilt
 * from its headers, so its events and S3 keys are those the daemon made. The recipients it had
 * are decided afresh, by the new rule set.
 */
export async function replayStored(message: Pick<SpooledMessage, "state" | "path" | "scan">, settings: ReplaySettings): Promise<ReplayResult> {
  const { state } = message;
  const file = spoolLabel(state.messageId);
  const envelope: Envelope = { mailFrom: state.envelope.mailFrom, recipients: [...state.envelope.recipients] };
  const { ipFilter, accepted, refused } = decideArrival(envelope.recipients, state.client.ip, state.client.tls, settings);
  if (accepted.length === 0) return { file, messageId: state.messageId, envelope, ipFilter, accepted, refused, trace: null };
  const { head } = await readStored(message.path, true);
  // The verdicts its scan gave, when it was scanned: they are part of how it was received.
  const scan = message.scan;
  const verdicts = scan ? { ...state.verdicts, spam: scan.spam, virus: scan.virus } : state.verdicts;
  const receipt = { receivedAt: new Date(state.receivedAt), verdicts };
  const stored = head.size <= BUFFERED_REPLAY_BYTES ? (await readStoredWhole(message.path)).body : null;
  const received = stored ? bufferMessage(stored, parseMessageHead(stored), receipt) : fileMessage(message.path, head, receipt);
  const receiptHeaders = state.receiptHeaders ?? [];
  const prepended = scan ? withScanVerdicts(receiptHeaders, scan) : receiptHeaders;
  const trace = await evaluateAccepted(settings, { mailFrom: envelope.mailFrom, recipients: accepted }, state.messageId, received, prepended);
  return { file, messageId: state.messageId, envelope, ipFilter, accepted, refused, trace };
}

/** Spooled messages replayed a few at a time, in input order; one that is gone or unreadable yields an error. */
export function replaySpool(messages: Iterable<SpooledMessage>, settings: ReplaySettings, concurrency = 16): AsyncGenerator<ReplayOutcome> {
  return inOrder(
    messages,
    (message) => replayStored(message, settings).catch((error: unknown) => ({ file: spoolLabel(message.state.messageId), error: describeError(error) })),
    concurrency,
  );
}

/** Each spooled message under two settings, as replayFilesTwice does for files. */
export function replaySpoolTwice(
  messages: Iterable<SpooledMessage>,
  before: ReplaySettings,
  after: ReplaySettings,
  concurrency = 16,
): AsyncGenerator<ReplayPairOutcome> {
  const start = async (message: SpooledMessage): Promise<ReplayPairOutcome> => {
    const file = spoolLabel(message.state.messageId);
    try {
      const [old, changed] = await Promise.all([replayStored(message, before), replayStored(message, after)]);
      return { file, before: old, after: changed };
    } catch (error) {
      return { file, error: describeError(error) };
    }
  };
  return inOrder(messages, start, concurrency);
}

/** Files named on the command line as they are; directories walked for `.eml` files, sorted. */
export async function* messageFiles(paths: readonly string[]): AsyncGenerator<string> {
  for (const path of paths) {
    const info = await stat(path).catch(() => null);
    if (!info?.isDirectory()) {
      yield path;
      continue;
    }
    const entries = await readdir(path, { recursive: true, withFileTypes: true });
    const files = entries
      .filter((entry) => entry.isFile() && entry.name.toLowerCase().endsWith(".eml"))
      .map((entry) => join(entry.parentPath, entry.name))
      .sort();
    yield* files;
  }
}

function describeError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === "ENOENT" ? "no such file" : error.message;
  }
  return String(error);
}

/** Runs `start` on each input with a few in flight at once, yielding what each gives in input order. */
async function* inOrder<I, T>(
  inputs: AsyncIterable<I> | Iterable<I>,
  start: (input: I) => Promise<T>,
  concurrency: number,
): AsyncGenerator<T> {
  const window: Promise<T>[] = [];
  for await (const input of inputs) {
    window.push(start(input));
    if (window.length >= concurrency) yield await window.shift()!;
  }
  while (window.length > 0) yield await window.shift()!;
}

/**
 * Replays many files with a few reads in flight at once, yielding outcomes in input order.
 * A file that cannot be read or parsed yields an error outcome; the others go on.
 */
export function replayFiles(
  files: AsyncIterable<string> | Iterable<string>,
  settings: ReplaySettings,
  concurrency = 16,
): AsyncGenerator<ReplayOutcome> {
  const start = (file: string): Promise<ReplayOutcome> =>
    replayMessage(file, settings).catch((error: unknown) => ({ file, error: describeError(error) }));
  return inOrder(files, start, concurrency);
}

export type ReplayPairOutcome = { file: string; before: ReplayResult; after: ReplayResult } | { file: string; error: string };

/**
 * Replays each file under two settings (two rule sets) from one read of it: the same bytes, so
 * the same envelope and message ID on both sides, at the cost of one read, not two.
 */
export function replayFilesTwice(
  files: AsyncIterable<string> | Iterable<string>,
  before: ReplaySettings,
  after: ReplaySettings,
  concurrency = 16,
): AsyncGenerator<ReplayPairOutcome> {
  const start = async (file: string): Promise<ReplayPairOutcome> => {
    try {
      const { head, bytes } = await readMessageFile(file, BUFFERED_REPLAY_BYTES);
      const [old, changed] = await Promise.all([replayHead(file, head, before, bytes), replayHead(file, head, after, bytes)]);
      return { file, before: old, after: changed };
    } catch (error) {
      return { file, error: describeError(error) };
    }
  };
  return inOrder(files, start, concurrency);
}
