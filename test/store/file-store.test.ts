import { spawn } from "node:child_process";
import { appendFile, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createReceiptRule, createReceiptRuleSet, setActiveReceiptRuleSet } from "../../src/rules/store.js";
import { openFileStore } from "../../src/store/file-store.js";
import type { ScopeState } from "../../src/store/store.js";

const scope = { account: "123456789012", region: "us-east-1" };
const origin = { via: "api" as const, operation: "Test" };
const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});
async function scratch(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "receiptd-store-"));
  dirs.push(dir);
  return dir;
}

const withRule = (state: ScopeState, name: string): ScopeState => {
  let receipt = state.receipt.ruleSets.has("main") ? state.receipt : createReceiptRuleSet(state.receipt, "main", new Date(0));
  receipt = createReceiptRule(receipt, "main", { Name: name, Enabled: true, Actions: [{ S3Action: { BucketName: "mail" } }] });
  return { ...state, receipt: setActiveReceiptRuleSet(receipt, "main") };
};

describe("the file state store", () => {
  it("keeps every acknowledged change across a reopen, with revisions and audit records", async () => {
    const dir = await scratch();
    const store = await openFileStore({ dir });
    await store.update(scope, origin, (state) => ({ state: withRule(state, "a"), result: undefined }));
    await store.update(scope, { ...origin, accessKeyId: "test", target: { RuleName: "b" } }, (state) => ({ state: withRule(state, "b"), result: undefined }));
    await store.update(scope, origin, (state) => ({ state: { ...state, sendingEnabled: false }, result: undefined }));
    // A change that throws, and one that changes nothing, write nothing.
    await expect(store.update(scope, origin, () => { throw new Error("refused"); })).rejects.toThrow("refused");
    await store.update(scope, origin, (state) => ({ state, result: undefined }));
    await store.close();

    const again = await openFileStore({ dir });
    const state = await again.read(scope);
    expect(state.revision).toBe(3);
    expect(state.sendingEnabled).toBe(false);
    expect(state.receipt.activeName).toBe("main");
    expect(state.receipt.ruleSets.get("main")?.rules.map((r) => r.name)).toEqual(["b", "a"]);
    const audit = await again.audit();
    expect(audit.map((r) => [r.seq, r.revision, r.operation])).toEqual([[1, 1, "Test"], [2, 2, "Test"], [3, 3, "Test"]]);
    expect(audit[1]).toMatchObject({ accessKeyId: "test", target: { RuleName: "b" } });
    expect((await again.read({ account: "123456789012", region: "eu-west-1" })).revision).toBe(0);
    await again.close();
  });

  it("serialises concurrent updates: all land, in order", async () => {
    const store = await openFileStore({ dir: await scratch() });
    const names = Array.from({ length: 30 }, (_, i) => `r${i}`);
    const revisions = await Promise.all(
      names.map((name) => store.update(scope, origin, (state) => ({ state: withRule(state, name), result: state.revision + 1 }))),
    );
    expect(revisions).toEqual(names.map((_, i) => i + 1));
    expect((await store.read(scope)).receipt.ruleSets.get("main")?.rules).toHaveLength(30);
    await store.close();
  });

  it("drops a torn last line, and refuses a second owner of the directory", async () => {
    const dir = await scratch();
    const store = await openFileStore({ dir });
    await store.update(scope, origin, (state) => ({ state: withRule(state, "a"), result: undefined }));
    await expect(openFileStore({ dir })).rejects.toThrow(/in use by process/);
    await store.close();
    await appendFile(join(dir, "journal.jsonl"), '{"seq":2,"scope":{"acc');
    const again = await openFileStore({ dir });
    expect((await again.read(scope)).revision).toBe(1);
    expect((await readFile(join(dir, "journal.jsonl"), "utf8")).endsWith("}\n")).toBe(true);
    await again.close();
  });

  it("loses no acknowledged change to kill -9 mid-burst", async () => {
    const dir = await scratch();
    // The built store in a child: each acknowledged revision is printed once its update resolved.
    const script = `
      const { openFileStore } = await import(${JSON.stringify(new URL("../../dist/store/file-store.js", import.meta.url).href)});
      const store = await openFileStore({ dir: ${JSON.stringify(dir)} });
      const scope = ${JSON.stringify(scope)};
      for (let i = 0; ; i++) {
        const revision = await store.update(scope, { via: "api", operation: "Burst" }, (state) => ({ state: { ...state, sendingEnabled: i % 2 === 0 }, result: state.revision + 1 }));
        process.stdout.write(revision + "\\n");
      }`;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    let acknowledged = 0;
    await new Promise<void>((resolve) => {
      child.stdout.on("data", (chunk: Buffer) => {
        const lines = chunk.toString().trim().split("\n");
        acknowledged = Number(lines.at(-1));
        if (acknowledged >= 100) {
          child.kill("SIGKILL");
          resolve();
        }
      });
    });
    await new Promise((resolve) => child.once("exit", resolve));
    const store = await openFileStore({ dir });
    const state = await store.read(scope);
    expect(state.revision).toBeGreaterThanOrEqual(acknowledged);
    // Consistent: the state of exactly that revision.
    expect(state.sendingEnabled).toBe((state.revision - 1) % 2 === 0);
    expect((await store.audit()).length).toBe(state.revision);
    await store.close();
  });
});
