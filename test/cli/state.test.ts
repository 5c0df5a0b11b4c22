// `receiptd state export|import|audit` against the store of a daemon run as users run it.
import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import {
  CreateReceiptFilterCommand,
  CreateReceiptRuleCommand,
  CreateReceiptRuleSetCommand,
  DescribeActiveReceiptRuleSetCommand,
  ListReceiptFiltersCommand,
  SetActiveReceiptRuleSetCommand,
} from "@aws-sdk/client-ses";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sesClient, storeModeConfig } from "../helpers/api-daemon.js";
import { ROOT, scratch, startDaemonProcess } from "../helpers/daemon.js";
import type { DaemonProcess } from "../helpers/daemon.js";

const run = promisify(execFile);

let work: { dir: string; remove(): Promise<void> };
let config: Record<string, unknown>;
let daemon: DaemonProcess | null = null;

async function state(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [join(ROOT, "dist/cli/main.js"), "state", ...args, "--config", join(work.dir, "receiptd.json")], { cwd: work.dir });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

const client = sesClient;

beforeAll(async () => {
  work = await scratch("receiptd-state-");
  config = storeModeConfig(work.dir);
  daemon = await startDaemonProcess(config, work.dir);
});
afterAll(async () => {
  if (daemon) await daemon.kill("SIGTERM");
  await work?.remove();
});

describe("receiptd state", () => {
  it("exports the active rule set and filters of a running daemon as the files of file mode, and audits who changed them", async () => {
    const ses = client(daemon!.apiPort!);
    await ses.send(new CreateReceiptRuleSetCommand({ RuleSetName: "inbound" }));
    await ses.send(
      new CreateReceiptRuleCommand({
        RuleSetName: "inbound",
        Rule: { Name: "archive", Enabled: true, Recipients: ["example.net"], Actions: [{ S3Action: { BucketName: "mail" } }] },
      }),
    );
    await ses.send(new CreateReceiptFilterCommand({ Filter: { Name: "office", IpFilter: { Policy: "Allow", Cidr: "198.51.100.0/24" } } }));
    await ses.send(new SetActiveReceiptRuleSetCommand({ RuleSetName: "inbound" }));

    const exported = await state("export", "--rules", "rules.json", "--filters", "filters.json");
    expect(exported).toMatchObject({ code: 0, stdout: 'rules.json: rule set "inbound", 1 rule(s)\nfilters.json: 1 IP filter(s)\n' });
    const active = await ses.send(new DescribeActiveReceiptRuleSetCommand({}));
    const rules = JSON.parse(await readFile(join(work.dir, "rules.json"), "utf8"));
    expect(rules).toEqual({ Metadata: { Name: "inbound", CreatedTimestamp: active.Metadata!.CreatedTimestamp!.toISOString() }, Rules: active.Rules });
    expect(JSON.parse(await readFile(join(work.dir, "filters.json"), "utf8"))).toEqual({
      Filters: (await ses.send(new ListReceiptFiltersCommand({}))).Filters,
    });
    // What export writes, the validator and file mode read.
    const validated = await run(process.execPath, [join(ROOT, "dist/cli/main.js"), "validate", "rules.json", "--filters", "filters.json"], { cwd: work.dir });
    expect(validated.stdout).toContain('rule set "inbound" is valid: 1 rule(s), 1 enabled');
    expect((await state("export")).stdout).toBe(await readFile(join(work.dir, "rules.json"), "utf8"));

    const audit = (await state("audit")).stdout.trim().split("\n");
    expect(audit.map((line) => line.split("  ")[4])).toEqual(["CreateReceiptRuleSet", "CreateReceiptRule", "CreateReceiptFilter", "SetActiveReceiptRuleSet"]);
    expect(audit[1]).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z  #2  123456789012\/us-east-1  api  CreateReceiptRule  test from 127\.0\.0\.1  RuleSetName=inbound RuleName=archive$/);
    const json = (await state("audit", "--json", "--limit", "1")).stdout.trim().split("\n").map((line) => JSON.parse(line));
    expect(json).toEqual([expect.objectContaining({ operation: "SetActiveReceiptRuleSet", via: "api", accessKeyId: "test", seq: 4, revision: 4 })]);
    expect((await state("audit", "--account", "210987654321")).stdout).toBe("");
  });

  it("imports only into a stopped daemon's store, and the daemon started again serves what was imported", async () => {
    const refused = await state("import", "--rules", "rules.json");
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/is in use by process \d+: stop the daemon first, or change the state through the SES API/);

    const rules = JSON.parse(await readFile(join(work.dir, "rules.json"), "utf8"));
    rules.Rules.push({ Name: "drop", Enabled: true, Recipients: ["spam@example.net"], Actions: [{ StopAction: { Scope: "RuleSet" } }] });
    await writeFile(join(work.dir, "rules.json"), JSON.stringify(rules));
    await writeFile(join(work.dir, "bad.json"), JSON.stringify({ Metadata: { Name: "x" }, Rules: [{ Name: "r", Actions: [{ S3Action: {} }] }] }));
    await daemon!.kill("SIGTERM");
    daemon = null;

    const bad = await state("import", "--rules", "bad.json");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("Rules[0].Actions[0].S3Action.BucketName");
    expect(await state("import", "--rules", "rules.json", "--filters", "filters.json")).toMatchObject({
      code: 0,
      stdout: expect.stringContaining('imported rule set "inbound" (2 rule(s)), now active, and 1 IP filter(s)'),
    });

    daemon = await startDaemonProcess(config, work.dir);
    const active = await client(daemon.apiPort!).send(new DescribeActiveReceiptRuleSetCommand({}));
    expect(active.Rules?.map((rule) => rule.Name)).toEqual(["archive", "drop"]);
    expect((await state("audit", "--limit", "1")).stdout).toMatch(/  import  StateImport  RuleSetName=inbound file=rules\.json\n$/);
  });
});
