import { performance } from "node:perf_hooks";
import { Readable, finished } from "node:stream";
import type { SMTPServerDataStream, SMTPServerSession } from "smtp-server";
import { newMessageId } from "../mail/message-id.js";
import { REPLIES } from "../rules/recipient-policy.js";
import type { SessionState } from "./admission.js";
import { errorText } from "../ops/log.js";
import type { DataRefusalReason, SmtpEvent } from "./events.js";
import { LISTENER_REPLIES, replyError } from "./replies.js";
import { DataScanner } from "./scanner.js";

export interface ClientInfo {
  /** The client's address: the proxied one behind a load balancer that sends PROXY headers. */
  ip: string;
  port: number;
  /** The HELO/EHLO name, lower-cased. */
  helo: string;
  reverseDns: string | null;
  tls: boolean;
}

/** One message being accepted. */
export interface AcceptedSession {
  messageId: string;
  /** "" for the null sender. */
  mailFrom: string;
  /** Accepted RCPT TO addresses, in the order given. */
  recipients: string[];
  client: ClientInfo;
  /** When DATA began; the date of the Received header (made from all this by `storedMessage`, src/mail/stored.ts). */
  receivedAt: Date;
}

export interface DataSettings {
  maxMessageBytes: number;
  random: (n: number) => Uint8Array;
  claimMessageId?: (newId: () => string) => string;
  clock: () => Date;
  accept: (session: AcceptedSession, body: AsyncIterable<Buffer>) => Promise<void>;
  emit(event: SmtpEvent): void;
  /** Messages being received: the listener's close() waits for them. */
  inFlight: Set<Promise<unknown>>;
}

/** The DATA reply: the text after 250, or the error smtp-server turns into the reply. */
export type DataReply = { error: Error; text?: undefined } | { error: null; text: string };

const DATA_REFUSAL_REPLIES: Record<DataRefusalReason, string> = {
  size: REPLIES.sizeExceeded,
  smuggling: REPLIES.smuggling,
  "header-limit": LISTENER_REPLIES.headerTooLarge,
  "accept-failed": LISTENER_REPLIES.localError,
  "connection-lost": LISTENER_REPLIES.localError,
};

interface DeliveryFailure {
  reason: DataRefusalReason;
  error: unknown;
}

const BODY_BUFFERED_CHUNKS = 8;

/**
 * Content of DATA through the scanner into `body`, with backpressure. Reading goes on to the end
 * of DATA whatever happens to `body` (refused, abandoned by its reader): the reply may only be
 * sent after the final dot, and a violation anywhere in DATA must be seen. `complete` is false
 * when the client went away before the end.
 */
function checkedContent(stream: SMTPServerDataStream, scanner: DataScanner): { body: Readable; complete: Promise<boolean> } {
  let passing = true;
  // Chunks pass as they are: in byte mode a reader would get the buffered chunks concatenated
  // into a new buffer, a copy of most of the message. A few chunks of room let the client go on
  // sending while the spool writes what came before.
  const body = new Readable({ read: () => void stream.resume(), objectMode: true, highWaterMark: BODY_BUFFERED_CHUNKS });
  // The reader gets a refusal through its iterator, even one that starts reading later; without a
  // listener the same error would also be thrown as an uncaught exception.
  body.on("error", () => undefined);
  const stopPassing = (error?: Error): void => {
    if (!passing) return;
    passing = false;
    body.destroy(error);
    stream.resume();
  };
  body.once("close", () => stopPassing());
  stream.on("data", (chunk: Buffer) => {
    const out = scanner.push(chunk);
    if (!passing) return;
    if (out === null) return stopPassing(new Error(`message refused: ${scanner.violation}`));
    if (!body.push(out)) stream.pause();
  });
  const complete = new Promise<boolean>((resolve) => {
    finished(stream, { writable: false }, (error) => {
      if (error) stopPassing(error);
      else if (passing) body.push(null);
      resolve(!error);
    });
  });
  return { body, complete };
}

/**
 * One message's DATA: streamed, checked and handed to accept(); answered 250 only once accept()
 * has it durable and the scanner found nothing (docs/behaviour.md §4).
 */
export async function receiveMessage(
  stream: SMTPServerDataStream,
  session: SMTPServerSession,
  ip: string,
  state: SessionState | undefined,
  settings: DataSettings,
): Promise<DataReply> {
  const started = performance.now();
  const scanner = new DataScanner(settings.maxMessageBytes);
  const newId = (): string => newMessageId(settings.random);
  const messageId = settings.claimMessageId?.(newId) ?? newId();
  const receivedAt = settings.clock();
  const mailFrom = session.envelope.mailFrom ? session.envelope.mailFrom.address : "";
  // `<postmaster>` and the address it was routed to are one recipient (Admission.rcptTo).
  const recipients = [...new Map(session.envelope.rcptTo.map((rcpt) => [rcpt.address.toLowerCase(), rcpt.address])).values()];
  const helo = session.hostNameAppearsAs;
  // Until the client's name is known (for the Received header) smtp-server's stream buffers, holding the client back.
  const reverseDns = (await state?.reverseDns) ?? null;
  const accepted: AcceptedSession = {
    messageId,
    mailFrom,
    recipients,
    client: { ip, port: session.remotePort, helo, reverseDns, tls: session.secure },
    receivedAt,
  };
  const content = checkedContent(stream, scanner);
  const delivery = deliver(settings.accept, accepted, content.body);
  settings.inFlight.add(delivery);
  const failure = await delivery;
  settings.inFlight.delete(delivery);
  // accept() may have settled before the end of DATA (failed, or stopped reading): read the rest.
  content.body.destroy();
  const complete = await content.complete;

  let refusal: DeliveryFailure | null = failure;
  if (!complete) refusal = { reason: "connection-lost", error: undefined };
  else if (scanner.violation) refusal = { reason: scanner.violation, error: undefined };
  const ms = Math.round(performance.now() - started);
  const base = { type: "data", session: session.id, ip, messageId, size: scanner.bytes, ms } as const;
  if (refusal) {
    const reply = DATA_REFUSAL_REPLIES[refusal.reason];
    settings.emit({
      ...base,
      accepted: false,
      reason: refusal.reason,
      reply,
      ...(refusal.error !== undefined ? { error: errorText(refusal.error) } : {}),
    });
    return { error: replyError(reply) };
  }
  if (state) state.messages++;
  settings.emit({ ...base, accepted: true });
  return { error: null, text: `Ok ${messageId}` };
}

/** Hands the message to accept(): null once it is durable and was read to the end, else why not. */
async function deliver(
  accept: DataSettings["accept"],
  session: AcceptedSession,
  body: Readable,
): Promise<DeliveryFailure | null> {
  try {
    await accept(session, body);
    // A reader that stopped early may have stored part of a message: that must not get a 250.
    return body.readableEnded ? null : { reason: "accept-failed", error: new Error("accept() resolved before reading the whole message") };
  } catch (error) {
    return { reason: "accept-failed", error };
  }
}
