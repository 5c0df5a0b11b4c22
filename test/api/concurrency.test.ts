// Many clients writing rules to one set at once: every call lands whole, in one order, or gets
// SES's error; the set holds exactly the rules whose calls succeeded.
import { AlreadyExistsException, CreateReceiptRuleCommand, CreateReceiptRuleSetCommand, DescribeReceiptRuleSetCommand } from "@aws-sdk/client-ses";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileStore } from "../../src/store/file-store.js";
import { startApiDaemon } from "../helpers/api-daemon.js";
import type { ApiDaemon } from "../helpers/api-daemon.js";

const CLIENTS = 12;
const RULES_PER_CLIENT = 8;

let api: ApiDaemon;
beforeAll(async () => {
  api = await startApiDaemon();
  await api.client().send(new CreateReceiptRuleSetCommand({ RuleSetName: "shared" }));
});
afterAll(async () => api?.stop());

describe("concurrent writes to one rule set", () => {
  it("serialise: each client's rules in its order, one winner per contested name, nothing lost", async () => {
    const outcomes: { name: string; ok: boolean }[] = [];
    // Each client has its own connections; each sends its rules one after the other (front
    // insertion), and every client also races the others for one contested name.
    await Promise.all(
      Array.from({ length: CLIENTS }, async (_, c) => {
        const ses = api.client();
        for (let i = 0; i < RULES_PER_CLIENT; i++) {
          const name = i === RULES_PER_CLIENT / 2 ? "contested" : `c${c}-r${i}`;
          try {
            await ses.send(new CreateReceiptRuleCommand({ RuleSetName: "shared", Rule: { Name: name, Enabled: true, Actions: [{ AddHeaderAction: { HeaderName: "X-Client", HeaderValue: String(c) } }] } }));
            outcomes.push({ name, ok: true });
          } catch (error) {
            expect(error).toBeInstanceOf(AlreadyExistsException);
            expect(name).toBe("contested");
            outcomes.push({ name, ok: false });
          }
        }
        ses.destroy();
      }),
    );
    const succeeded = outcomes.filter((o) => o.ok).map((o) => o.name);
    expect(outcomes.filter((o) => o.name === "contested" && o.ok)).toHaveLength(1);
    expect(succeeded).toHaveLength(CLIENTS * (RULES_PER_CLIENT - 1) + 1);

    const rules = (await api.client().send(new DescribeReceiptRuleSetCommand({ RuleSetName: "shared" }))).Rules!.map((rule) => rule.Name!);
    expect([...rules].sort()).toEqual([...succeeded].sort());
    // Front insertion: the set read backwards is the order the writes were applied in, which
    // is the store's audit order, and keeps every client's own order.
    const applied = [...rules].reverse();
    const audit = (await (await readFileStore(join(api.dataDir, "state"))).audit()).filter((record) => record.operation === "CreateReceiptRule");
    expect(audit.map((record) => record.target?.RuleName)).toEqual(applied);
    for (let c = 0; c < CLIENTS; c++) {
      const own = applied.filter((name) => name.startsWith(`c${c}-`));
      expect(own).toEqual(Array.from({ length: RULES_PER_CLIENT }, (_, i) => `c${c}-r${i}`).filter((name) => own.includes(name)));
      expect(own).toHaveLength(RULES_PER_CLIENT - 1);
    }
  }, 60_000);
});
