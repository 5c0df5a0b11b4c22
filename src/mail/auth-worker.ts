import { Readable } from "node:stream";
import { parentPort, workerData } from "node:worker_threads";
import { checkMessage } from "./auth-check.js";
import { SLOT_BYTES } from "./auth-protocol.js";
import type { FromWorker, ToWorker } from "./auth-protocol.js";

/*
 * An authentication worker thread (src/mail/auth-pool.ts starts it): runs mailauth on the messages
 * the daemon streams to it, several at once. DNS is asked of the daemon's thread, where the
 * resolver and the message's DNS budget are (src/mail/auth.ts).
 */

if (!parentPort) throw new Error("src/mail/auth-worker.ts runs as a worker thread");
const port = parentPort;
const shared = workerData as SharedArrayBuffer;
const send = (message: FromWorker): void => port.postMessage(message);

/** One message's bytes as they arrive, read by mailauth at its own pace. */
class Inbox {
  private chunks: Buffer[] = [];
  private ended = false;
  private aborted = false;
  private wake: (() => void) | undefined;

  constructor(private readonly job: number) {}

  push(bytes: Buffer): void {
    this.chunks.push(bytes);
    this.notify();
  }

  end(): void {
    this.ended = true;
    this.notify();
  }

  abort(): void {
    this.aborted = true;
    this.notify();
  }

  private notify(): void {
    this.wake?.();
    this.wake = undefined;
  }

  async *read(): AsyncGenerator<Buffer> {
    for (;;) {
      if (this.aborted) throw new Error("the message could not be read to its end");
      const chunk = this.chunks.shift();
      if (chunk) {
        send({ type: "taken", job: this.job, bytes: chunk.length });
        yield chunk;
      } else if (this.ended) {
        return;
      } else {
        await new Promise<void>((resolve) => (this.wake = resolve));
      }
    }
  }
}

const inboxes = new Map<number, Inbox>();
const queries = new Map<number, { resolve(answer: unknown): void; reject(error: Error): void }>();
let lastQuery = 0;

function resolverFor(job: number) {
  return (name: string, rrtype: string): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const query = ++lastQuery;
      queries.set(query, { resolve, reject });
      send({ type: "dns", job, query, name, rrtype });
    });
}

port.on("message", (message: ToWorker) => {
  switch (message.type) {
    case "start": {
      const inbox = new Inbox(message.job);
      inboxes.set(message.job, inbox);
      void checkMessage(Readable.from(inbox.read()), message.envelope, resolverFor(message.job)).then((result) => {
        inboxes.delete(message.job);
        send({ type: "result", job: message.job, result });
      });
      break;
    }
    case "chunk": {
      // A copy: the slot is the sender's again at once.
      const bytes = Buffer.from(new Uint8Array(shared, message.slot * SLOT_BYTES, message.length));
      send({ type: "free", slot: message.slot });
      inboxes.get(message.job)?.push(bytes);
      break;
    }
    case "end":
      inboxes.get(message.job)?.end();
      break;
    case "abort":
      inboxes.get(message.job)?.abort();
      break;
    case "dns": {
      const waiting = queries.get(message.query);
      queries.delete(message.query);
      if (message.error) waiting?.reject(Object.assign(new Error(message.error.message), { code: message.error.code }));
      else waiting?.resolve(message.answer);
      break;
    }
  }
});
