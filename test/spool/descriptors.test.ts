// A failing action must not leave the spool file's descriptor open, however early it fails.
import { readdir } from "node:fs/promises";
import { afterEach, beforeEach, expect, it } from "vitest";
import { prependHeadersStream } from "../../src/mail/edit.js";
import { Processor } from "../../src/spool/processor.js";
import { Spool } from "../../src/spool/spool.js";
import { RECEIVED_AT, chunks, messageBytes, newId, scratchDir, snapshotOf, stateFor } from "./helpers.js";

let dir: string;
let remove: () => Promise<void>;
beforeEach(async () => {
  ({ dir, remove } = await scratchDir());
});
afterEach(async () => {
  await remove();
});

const openDescriptors = async () => (await readdir("/proc/self/fd")).length;

it("closes the message file of actions that fail before or while reading it", async () => {
  const spool = await Spool.open({ dir, fsync: false });
  const id = newId();
  await spool.writer.store(stateFor(id, await spool.writer.saveSnapshot(snapshotOf())), chunks(messageBytes(id)));
  let calls = 0;
  const fail = async (call: { message: { open(): AsyncIterable<Buffer> }; prependedHeaders: readonly { name: string; value: string }[] }) => {
    calls++;
    // As the SES executor hands it to a back end, which then fails: before reading, or after one chunk.
    const stream = prependHeadersStream(call.prependedHeaders, call.message.open());
    if (calls % 2 === 0) for await (const chunk of stream) { void chunk; break; }
    throw new Error("back end down");
  };
  const processor = new Processor({
    spool: spool.queue,
    executor: { S3: fail, SNS: fail, Lambda: fail, Bounce: fail, AddHeader: fail, Stop: fail, WorkMail: fail } as never,
    hostname: "mx.example.com",
    sendFailureDsn: async () => undefined,
    // Inside the retry window, so that every failure is retried.
    clock: () => new Date(RECEIVED_AT.getTime() + 1000),
    backoff: { initialMs: 1, maxMs: 1 },
  });
  processor.enqueue(id);
  const wait = async (n: number) => {
    while (calls < n) await new Promise((resolve) => setTimeout(resolve, 1));
  };
  await wait(5);
  const before = await openDescriptors();
  await wait(105);
  await new Promise((resolve) => setTimeout(resolve, 50));
  expect(await openDescriptors()).toBeLessThanOrEqual(before + 2);
  await processor.drain(0);
  await spool.close();
});
