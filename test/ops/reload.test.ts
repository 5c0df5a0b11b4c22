import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../../src/ops/log.js";
import { createMetrics } from "../../src/ops/metrics.js";
import { PolicyLoadError, mirrorPolicy, watchPolicy } from "../../src/ops/reload.js";
import type { PolicyTexts, WatchedPolicy } from "../../src/ops/reload.js";
import { decideIp } from "../../src/rules/filters.js";
import { isInsideIdentity } from "../../src/rules/recipients.js";
import { Capture } from "./capture.js";

function ruleSetJson(name: string, ...recipients: string[]): string {
  const rule = { Name: "main", Enabled: true, Recipients: recipients, Actions: [{ StopAction: { Scope: "RuleSet" } }] };
  return JSON.stringify({ Metadata: { Name: name }, Rules: [rule] }, null, 2);
}

function filtersJson(...blocked: string[]): string {
  return JSON.stringify({
    Filters: blocked.map((cidr, i) => ({ Name: `block-${i}`, IpFilter: { Policy: "Block", Cidr: cidr } })),
  });
}

const BROKEN_RULES = JSON.stringify({
  Metadata: { Name: "broken" },
  Rules: [{ Name: "bad name!", Enabled: true, Actions: [{ BounceAction: { SmtpReplyCode: "250" } }] }],
});

async function until(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** How editors and ConfigMap updates save: a new file renamed over the old one. */
async function replace(path: string, text: string): Promise<void> {
  const temp = `${path}.${process.hrtime.bigint()}.tmp`;
  await writeFile(temp, text);
  await rename(temp, path);
}

let dir: string;
let rulesFile: string;
let filtersFile: string;
let out: Capture;
let policy: WatchedPolicy | undefined;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "receiptd-reload-"));
  rulesFile = join(dir, "rules.json");
  filtersFile = join(dir, "filters.json");
  out = new Capture();
  await writeFile(rulesFile, ruleSetJson("one", "example.com"));
  await writeFile(filtersFile, filtersJson("10.0.0.0/8"));
});

afterEach(async () => {
  policy?.close();
  policy = undefined;
  await rm(dir, { recursive: true, force: true });
});

const logger = () => createLogger({ stream: out, format: "json" });
const events = (name: string) => out.records().filter((record) => record.event === name);

describe("loading at start", () => {
  it("loads the rule set, filters and identities from the rules", async () => {
    policy = await watchPolicy({ sources: { rules: rulesFile, filters: filtersFile }, logger: logger() });
    expect(policy.ruleSet().name).toBe("one");
    expect(Object.isFrozen(policy.ruleSet())).toBe(true);
    expect(policy.generation()).toBe(1);
    expect(isInsideIdentity("a@example.com", policy.identities())).toBe(true);
    expect(isInsideIdentity("a@example.net", policy.identities())).toBe(false);
    expect(decideIp(policy.filters(), "10.1.2.3").decision).toBe("block");
    expect(policy.version()).toEqual({
      ruleSet: policy.ruleSet(),
      identities: policy.identities(),
      filters: policy.filters(),
      generation: 1,
    });
    expect(events("config.loaded")[0]).toMatchObject({ generation: 1, ruleSet: "one", rules: 1, filters: 1 });
  });

  it("uses the configured identities when there are any", async () => {
    policy = await watchPolicy({ sources: { rules: rulesFile, identities: ["example.net"] }, logger: logger() });
    expect(isInsideIdentity("a@example.net", policy.identities())).toBe(true);
    expect(isInsideIdentity("a@example.com", policy.identities())).toBe(false);
    expect(decideIp(policy.filters(), "10.1.2.3").decision).toBe("none");
  });

  it("throws every issue of every invalid file", async () => {
    await writeFile(rulesFile, BROKEN_RULES);
    await writeFile(filtersFile, "{ not json");
    const error = await watchPolicy({ sources: { rules: rulesFile, filters: filtersFile }, logger: logger() }).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(PolicyLoadError);
    const { errors, message } = error as PolicyLoadError;
    expect(errors.map((each) => each.source)).toEqual([rulesFile, filtersFile]);
    expect(errors[0]!.issues.length).toBeGreaterThan(1);
    for (const issue of errors[0]!.issues) expect(message).toContain(issue.message);
    expect(message).toContain(`${filtersFile}: invalid JSON`);
  });

  it("throws when a file is missing", async () => {
    const missing = watchPolicy({ sources: { rules: join(dir, "nope.json") }, logger: logger() });
    await expect(missing).rejects.toThrow(/cannot read the file/);
  });
});

describe("reload()", () => {
  it("takes a changed rule set, recomputing the identities; old snapshots stay as they were", async () => {
    const metrics = createMetrics();
    policy = await watchPolicy({ sources: { rules: rulesFile }, logger: logger(), metrics });
    const before = policy.version();
    await writeFile(rulesFile, ruleSetJson("two", "example.org"));
    expect(await policy.reload()).toBe(true);
    expect(policy.ruleSet().name).toBe("two");
    expect(policy.generation()).toBe(2);
    expect(isInsideIdentity("a@example.org", policy.identities())).toBe(true);
    expect(isInsideIdentity("a@example.com", policy.identities())).toBe(false);
    expect(before.ruleSet.name).toBe("one");
    expect(before.generation).toBe(1);
    expect(Object.isFrozen(before)).toBe(true);
    expect(events("config.reloaded")[0]).toMatchObject({ trigger: "reload", changed: ["rules"], generation: 2, ruleSet: "two" });
    expect(metrics.configReloads.get({ result: "success" })).toBe(1);
  });

  it("refuses a broken rule set, logs every issue and keeps the old one", async () => {
    const metrics = createMetrics();
    policy = await watchPolicy({ sources: { rules: rulesFile }, logger: logger(), metrics });
    const before = policy.ruleSet();
    await writeFile(rulesFile, BROKEN_RULES);
    expect(await policy.reload()).toBe(false);
    expect(policy.ruleSet()).toBe(before);
    expect(policy.generation()).toBe(1);
    const [refused] = events("config.reload_refused");
    expect(refused).toMatchObject({ level: "error", file: rulesFile, keptGeneration: 1, trigger: "reload" });
    const issues = refused!.issues as { path: string; message: string }[];
    expect(issues.map((issue) => issue.path)).toEqual(
      expect.arrayContaining([expect.stringContaining("Name"), expect.stringContaining("SmtpReplyCode")]),
    );
    expect(metrics.configReloads.get({ result: "failure" })).toBe(1);
    // Asking again reports again: the operator sent the signal to find out.
    expect(await policy.reload()).toBe(false);
    expect(events("config.reload_refused")).toHaveLength(2);
  });

  it("without TLS offered, refuses a rule set whose enabled rule requires TLS, at start and on reload", async () => {
    const requiring = (enabled: boolean) =>
      JSON.stringify({
        Metadata: { Name: "requiring" },
        Rules: [
          { Name: "secure", Enabled: enabled, TlsPolicy: "Require", Recipients: ["example.com"], Actions: [{ StopAction: { Scope: "RuleSet" } }] },
        ],
      });
    const metrics = createMetrics();
    policy = await watchPolicy({ sources: { rules: rulesFile }, logger: logger(), metrics, tlsOffered: false });
    await writeFile(rulesFile, requiring(true));
    expect(await policy.reload()).toBe(false);
    expect(policy.ruleSet().name).toBe("one");
    expect(events("config.reload_refused")[0]!.issues).toEqual([
      { path: "Rules[0].TlsPolicy", message: expect.stringContaining('rule "secure" requires TLS, but no TLS is configured (config.smtp.tls)') },
    ]);
    expect(metrics.configReloads.get({ result: "failure" })).toBe(1);
    // A disabled rule answers nobody, so it may wait for TLS to be configured.
    await writeFile(rulesFile, requiring(false));
    expect(await policy.reload()).toBe(true);
    policy.close();

    await writeFile(rulesFile, requiring(true));
    const refused = await watchPolicy({ sources: { rules: rulesFile }, logger: logger(), tlsOffered: false }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(PolicyLoadError);
    expect((refused as Error).message).toContain(`${rulesFile}: Rules[0].TlsPolicy: rule "secure" requires TLS`);
    policy = await watchPolicy({ sources: { rules: rulesFile }, logger: logger(), tlsOffered: true });
    expect(policy.ruleSet().name).toBe("requiring");
  });

  it("keeps the old rule set when the file disappears", async () => {
    policy = await watchPolicy({ sources: { rules: rulesFile }, logger: logger() });
    await rm(rulesFile);
    expect(await policy.reload()).toBe(false);
    expect(policy.ruleSet().name).toBe("one");
    expect(events("config.reload_refused")[0]!.issues).toEqual([
      { path: "", message: expect.stringContaining("cannot read the file") },
    ]);
  });

  it("reports an unchanged configuration without a new generation", async () => {
    const metrics = createMetrics();
    policy = await watchPolicy({ sources: { rules: rulesFile, filters: filtersFile }, logger: logger(), metrics });
    const before = policy.version();
    expect(await policy.reload()).toBe(true);
    expect(policy.version()).toBe(before);
    expect(events("config.unchanged")).toHaveLength(1);
    expect(metrics.configReloads.get({ result: "success" })).toBe(1);
  });

  it("reloads filters alone, keeping the rule set and identities objects", async () => {
    policy = await watchPolicy({ sources: { rules: rulesFile, filters: filtersFile }, logger: logger() });
    const before = policy.version();
    await writeFile(filtersFile, filtersJson("192.0.2.0/24"));
    expect(await policy.reload()).toBe(true);
    expect(decideIp(policy.filters(), "10.1.2.3").decision).toBe("none");
    expect(decideIp(policy.filters(), "192.0.2.9").decision).toBe("block");
    expect(policy.ruleSet()).toBe(before.ruleSet);
    expect(policy.identities()).toBe(before.identities);
    expect(decideIp(before.filters, "10.1.2.3").decision).toBe("block");
  });

  it("takes a valid file even when the other one is refused", async () => {
    policy = await watchPolicy({ sources: { rules: rulesFile, filters: filtersFile }, logger: logger() });
    await writeFile(rulesFile, ruleSetJson("two", "example.org"));
    await writeFile(filtersFile, filtersJson("not-a-cidr"));
    expect(await policy.reload()).toBe(false);
    expect(policy.ruleSet().name).toBe("two");
    expect(decideIp(policy.filters(), "10.1.2.3").decision).toBe("block");
    expect(events("config.reload_refused").map((event) => event.file)).toEqual([filtersFile]);
  });

  it("runs overlapping reloads one after the other", async () => {
    policy = await watchPolicy({ sources: { rules: rulesFile }, logger: logger() });
    await writeFile(rulesFile, ruleSetJson("two", "example.org"));
    const first = policy.reload();
    const second = policy.reload();
    expect(await Promise.all([first, second])).toEqual([true, true]);
    expect(policy.generation()).toBe(2);
    expect(events("config.reloaded")).toHaveLength(1);
    expect(events("config.unchanged")).toHaveLength(1);
  });
});

describe("watching the files", () => {
  it("takes an edit in place", async () => {
    policy = await watchPolicy({ sources: { rules: rulesFile }, logger: logger(), debounceMs: 20 });
    await writeFile(rulesFile, ruleSetJson("edited", "example.org"));
    await until(() => policy!.ruleSet().name === "edited", "the edit");
    expect(events("config.reloaded")[0]).toMatchObject({ trigger: "watch" });
  });

  it("takes a file replaced by rename (write a temporary file, rename it over)", async () => {
    policy = await watchPolicy({ sources: { rules: rulesFile }, logger: logger(), debounceMs: 20 });
    for (const name of ["renamed-1", "renamed-2"]) {
      await replace(rulesFile, ruleSetJson(name, "example.org"));
      // The second round proves the watch survived the first replacement of the file.
      await until(() => policy!.ruleSet().name === name, name);
    }
    expect(policy.generation()).toBe(3);
  });

  it("refuses a broken file once, then takes the fixed one", async () => {
    const metrics = createMetrics();
    policy = await watchPolicy({ sources: { rules: rulesFile }, logger: logger(), metrics, debounceMs: 20 });
    // Replaced whole, so that no read can catch a half-written file and count a second refusal.
    await replace(rulesFile, BROKEN_RULES);
    await until(() => events("config.reload_refused").length > 0, "the refusal");
    // Unrelated churn in the directory does not repeat the report.
    await writeFile(join(dir, "unrelated.txt"), "x");
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(events("config.reload_refused")).toHaveLength(1);
    expect(policy.ruleSet().name).toBe("one");
    await replace(rulesFile, ruleSetJson("fixed", "example.org"));
    await until(() => policy!.ruleSet().name === "fixed", "the fix");
    expect(metrics.configReloads.get({ result: "failure" })).toBe(1);
    expect(metrics.configReloads.get({ result: "success" })).toBe(1);
  });

  it("watches the filters file, also in another directory", async () => {
    const other = await mkdtemp(join(tmpdir(), "receiptd-reload-filters-"));
    try {
      const otherFilters = join(other, "filters.json");
      await writeFile(otherFilters, filtersJson("10.0.0.0/8"));
      policy = await watchPolicy({ sources: { rules: rulesFile, filters: otherFilters }, logger: logger(), debounceMs: 20 });
      await writeFile(otherFilters, filtersJson("198.51.100.0/24"));
      await until(() => decideIp(policy!.filters(), "198.51.100.1").decision === "block", "the new filters");
      expect(decideIp(policy.filters(), "10.0.0.1").decision).toBe("none");
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });

  it("stops watching after close(), while reload() still works", async () => {
    policy = await watchPolicy({ sources: { rules: rulesFile }, logger: logger(), debounceMs: 20 });
    policy.close();
    await writeFile(rulesFile, ruleSetJson("two", "example.org"));
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(policy.ruleSet().name).toBe("one");
    expect(await policy.reload()).toBe(true);
    expect(policy.ruleSet().name).toBe("two");
  });
});

describe("mirroring in another process (acceptors)", () => {
  it("passes each change that took effect, as texts from which mirrorPolicy builds the same state", async () => {
    const changes: PolicyTexts[] = [];
    policy = await watchPolicy({ sources: { rules: rulesFile, filters: filtersFile, identities: ["example.net"] }, logger: logger(), onChange: (texts) => changes.push(texts) });
    const mirror = mirrorPolicy(["example.net"], policy.texts());
    expect(mirror.generation()).toBe(1);
    expect(mirror.ruleSet()).toEqual(policy.ruleSet());
    expect(mirror.filters()).toEqual(policy.filters());
    expect(mirror.identities()).toEqual(policy.identities());
    expect(Object.isFrozen(mirror.version())).toBe(true);

    await writeFile(rulesFile, BROKEN_RULES);
    expect(await policy.reload()).toBe(false);
    await writeFile(rulesFile, ruleSetJson("two", "example.org"));
    await writeFile(filtersFile, filtersJson("192.0.2.0/24"));
    expect(await policy.reload()).toBe(true);
    expect(changes).toEqual([{ rules: ruleSetJson("two", "example.org"), filters: filtersJson("192.0.2.0/24"), generation: 2 }]);

    expect(mirror.update(changes[0]!)).toBe(true);
    expect(mirror.version()).toEqual(policy.version());
    expect(decideIp(mirror.filters(), "192.0.2.9").decision).toBe("block");
    // A generation it has already (a repeated broadcast) changes nothing.
    const current = mirror.version();
    expect(mirror.update({ rules: ruleSetJson("old", "example.com"), generation: 1 })).toBe(false);
    expect(mirror.version()).toBe(current);
  });

  it("takes identities from the rule set when none are configured, and no filters file as no filters", () => {
    const mirror = mirrorPolicy(undefined, { rules: ruleSetJson("one", "example.com"), generation: 1 });
    expect(isInsideIdentity("a@example.com", mirror.identities())).toBe(true);
    expect(decideIp(mirror.filters(), "10.1.2.3").decision).toBe("none");
    expect(() => mirror.update({ rules: BROKEN_RULES, generation: 2 })).toThrow();
    expect(mirror.generation()).toBe(1);
  });
});

describe("files and directories that would stop live reload", () => {
  it("refuses a FIFO in place of the rules file without blocking, and reloads after it", async () => {
    policy = await watchPolicy({ sources: { rules: rulesFile }, logger: logger() });
    await rm(rulesFile);
    execFileSync("mkfifo", [rulesFile]);
    expect(await policy.reload()).toBe(false);
    expect(events("config.reload_refused")[0]!.issues).toEqual([
      { path: "", message: expect.stringContaining("not a regular file") },
    ]);
    await rm(rulesFile);
    await writeFile(rulesFile, ruleSetJson("two", "example.org"));
    expect(await policy.reload()).toBe(true);
    expect(policy.ruleSet().name).toBe("two");
  });

  it("watches again, and says so, when the directory of the rules file is replaced", async () => {
    const parent = await mkdtemp(join(tmpdir(), "receiptd-reload-dir-"));
    try {
      const live = join(parent, "live");
      await mkdir(live);
      const file = join(live, "rules.json");
      await writeFile(file, ruleSetJson("one", "example.com"));
      policy = await watchPolicy({ sources: { rules: file }, logger: logger(), debounceMs: 20, watchCheckMs: 50 });
      const next = join(parent, "next");
      await mkdir(next);
      await writeFile(join(next, "rules.json"), ruleSetJson("two", "example.org"));
      await rename(live, join(parent, "old"));
      await rename(next, live);
      await until(() => events("config.watch_restarted").length > 0, "the new watch");
      await until(() => policy!.ruleSet().name === "two", "the new directory's file");
      await writeFile(file, ruleSetJson("three", "example.org"));
      await until(() => policy!.ruleSet().name === "three", "an edit in the new directory");
    } finally {
      await rm(parent, { recursive: true, force: true });
    }
  });
});
