// File mode (config.rules): the files own the active rule set and the filters; the API reads
// them as imported, refuses to change them, and changes everything else.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CreateReceiptFilterCommand,
  CreateReceiptRuleCommand,
  CreateReceiptRuleSetCommand,
  DeleteReceiptRuleCommand,
  DescribeActiveReceiptRuleSetCommand,
  ListReceiptFiltersCommand,
  SESClient,
  SetActiveReceiptRuleSetCommand,
  VerifyDomainIdentityCommand,
} from "@aws-sdk/client-ses";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/config.js";
import { startDaemon } from "../../src/daemon/daemon.js";
import type { Daemon } from "../../src/daemon/daemon.js";
import { createLogger } from "../../src/ops/log.js";
import { Capture } from "../ops/capture.js";
import { liveRuleSet, testConfig } from "../helpers/daemon.js";

let dir: string;
let daemon: Daemon;
let ses: SESClient;
let rulesFile: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "receiptd-file-mode-"));
  rulesFile = join(dir, "rules.json");
  await writeFile(rulesFile, liveRuleSet(["example.com"]));
  const filtersFile = join(dir, "filters.json");
  await writeFile(filtersFile, JSON.stringify({ Filters: [{ Name: "office", IpFilter: { Policy: "Allow", Cidr: "198.51.100.0/24" } }] }));
  const config = parseConfig(testConfig(dir, { rules: rulesFile, filters: filtersFile }), { source: join(dir, "receiptd.json"), baseDir: dir, env: {} });
  daemon = await startDaemon(config, { logger: createLogger({ stream: new Capture(), format: "json" }) });
  const { host, port } = daemon.apiAddress()!;
  ses = new SESClient({ endpoint: `http://${host}:${port}`, region: "us-east-1", credentials: { accessKeyId: "test", secretAccessKey: "test" }, maxAttempts: 1 });
});
afterAll(async () => {
  await daemon?.stop(1000);
  await rm(dir, { recursive: true, force: true });
});

async function refusal(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    return `${(error as Error).name}: ${(error as Error).message}`;
  }
  return "accepted";
}

describe("file mode beside the API", () => {
  it("reads the files' rule set and filters as imported, and refuses changes to them", async () => {
    const active = await ses.send(new DescribeActiveReceiptRuleSetCommand({}));
    expect(active.Metadata?.Name).toBe("live");
    expect(active.Rules?.map((rule) => rule.Name)).toEqual(["keep"]);
    expect((await ses.send(new ListReceiptFiltersCommand({}))).Filters?.map((filter) => filter.Name)).toEqual(["office"]);

    const owned = `InvalidParameterValue: rule set live is managed by the file ${rulesFile} (receiptd file mode); change the file`;
    expect(await refusal(ses.send(new CreateReceiptRuleCommand({ RuleSetName: "live", Rule: { Name: "extra", Actions: [] } })))).toBe(owned);
    expect(await refusal(ses.send(new DeleteReceiptRuleCommand({ RuleSetName: "live", RuleName: "keep" })))).toBe(owned);
    expect(await refusal(ses.send(new SetActiveReceiptRuleSetCommand({})))).toMatch(/the active rule set is managed by the file/);
    expect(await refusal(ses.send(new CreateReceiptFilterCommand({ Filter: { Name: "more", IpFilter: { Policy: "Block", Cidr: "203.0.113.0/24" } } })))).toMatch(
      /^InvalidParameterValue: the IP filters are managed by the file .*filters\.json/,
    );
    // What the files do not own, the API changes.
    await ses.send(new CreateReceiptRuleSetCommand({ RuleSetName: "draft" }));
    await ses.send(new CreateReceiptRuleCommand({ RuleSetName: "draft", Rule: { Name: "try", Actions: [] } }));
    await ses.send(new VerifyDomainIdentityCommand({ Domain: "example.org" }));
  });

  it("imports a changed file on reload, and the API reads the new rule set", async () => {
    await writeFile(rulesFile, JSON.stringify({ Metadata: { Name: "live" }, Rules: [{ Name: "keep", Enabled: true, Actions: [{ S3Action: { BucketName: "live" } }] }, { Name: "second", Enabled: true, Actions: [] }] }));
    expect(await daemon.reload()).toBe(true);
    for (let i = 0; i < 50; i++) {
      const names = (await ses.send(new DescribeActiveReceiptRuleSetCommand({}))).Rules?.map((rule) => rule.Name);
      if (names?.length === 2) {
        expect(names).toEqual(["keep", "second"]);
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error("the changed file never reached the API");
  });
});
