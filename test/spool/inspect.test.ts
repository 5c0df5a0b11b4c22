// SpoolInspector over a spool another Spool owns: it follows moves and changes nothing.
import { appendFile, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { EvaluationTrace } from "../../src/rules/evaluate.js";
import { SpoolInspector } from "../../src/spool/inspect.js";
import { Spool } from "../../src/spool/spool.js";
import { chunks, messageBytes, newId, scratchDir, snapshotOf, stateFor } from "./helpers.js";

let dir: string;
let remove: () => Promise<void>;
beforeEach(async () => {
  ({ dir, remove } = await scratchDir());
});
afterEach(() => remove());

function trace(id: string): EvaluationTrace {
  return { messageId: id, rules: [{ name: "first", index: 0, recipients: ["info@example.com"], actions: [], stop: null }], end: "completed", outcomes: [], prependedHeaders: [] };
}

describe("SpoolInspector", () => {
  it("reads a queued message without cutting its journal's torn line, then finds it where it moved", async () => {
    const spool = await Spool.open({ dir, fsync: false });
    try {
      const snapshot = await spool.writer.saveSnapshot(snapshotOf());
      const id = newId();
      await spool.writer.store(stateFor(id, snapshot), chunks(messageBytes(id)));
      await spool.queue.recordOutcome(id, { status: "done", detail: { key: id } });
      // An append under way: the daemon's own read would cut this tail, the inspector must not.
      const journal = join(dir, "queue", `${id}.journal`);
      await appendFile(journal, '{"status":"do');
      const journalBefore = await readFile(journal);
      const lockBefore = await stat(join(dir, "lock"));

      // One inspector throughout, as a list that outlives a move would see it.
      const inspector = new SpoolInspector(dir);
      const [queued] = await inspector.list();
      expect(queued).toMatchObject({ area: "queued", journal: [{ status: "done", detail: { key: id } }], trace: null });
      expect(await readFile(journal)).toEqual(journalBefore);
      // The empty files the writer keeps ahead in queue/ are no messages.
      expect(await inspector.list()).toHaveLength(1);

      await spool.queue.complete(id, trace(id));
      const done = await inspector.find(id);
      expect(done).toMatchObject({ area: "done", trace: { end: "completed", rules: [{ name: "first" }] } });
      expect(done!.finishedAt).toMatch(/^\d{4}-/);
      expect(await inspector.export(id)).toEqual(messageBytes(id));
      const lockAfter = await stat(join(dir, "lock"));
      expect([lockAfter.ino, lockAfter.mtimeMs]).toEqual([lockBefore.ino, lockBefore.mtimeMs]);
    } finally {
      await spool.close();
    }
  });

  it("puts the receipt headers on top of the stored bytes for export, and gives a dead letter's reason", async () => {
    const spool = await Spool.open({ dir, fsync: false });
    try {
      const snapshot = await spool.writer.saveSnapshot(snapshotOf());
      const id = newId();
      const body = Buffer.from("Subject: x\r\n\r\nbody\r\n");
      const receiptHeaders = [
        { name: "Return-Path", value: "<carol@example.net>" },
        { name: "Received", value: "from mail.example.net by mx.example.com" },
      ];
      await spool.writer.store(stateFor(id, snapshot, { receiptHeaders }), chunks(body));
      await spool.queue.deadLetter(id, null, "unprocessable: test");
      const inspector = new SpoolInspector(dir);
      expect(await inspector.find(id)).toMatchObject({ area: "dead", deadReason: "unprocessable: test", trace: null });
      expect((await inspector.export(id))!.toString()).toBe(
        "Return-Path: <carol@example.net>\r\nReceived: from mail.example.net by mx.example.com\r\nSubject: x\r\n\r\nbody\r\n",
      );
      expect(await inspector.find(newId())).toBeNull();
    } finally {
      await spool.close();
    }
  });
});
