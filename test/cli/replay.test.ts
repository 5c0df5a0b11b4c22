import { mkdtemp, rm, writeFile, mkdir, open, readFile, readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { receiptd } from "../helpers/cli.js";

const root = fileURLToPath(new URL("../..", import.meta.url));

const jsonLines = (stdout: string) =>
  stdout
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as Record<string, unknown>);

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "receiptd-cli-"));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe("receiptd replay", () => {
  it("replays every sample with the example rule set: one JSON line per message, in file order", async () => {
    const { code, stdout } = await receiptd("replay", "samples", "--rules", "rules/example.json", "--json");
    expect(code).toBe(0);
    const lines = jsonLines(stdout);
    expect(lines.map((l) => l.file)).toEqual([...lines.map((l) => l.file as string)].sort());
    expect(lines.length).toBeGreaterThanOrEqual(6);
    for (const line of lines) {
      expect(Object.keys(line)).toEqual(["file", "messageId", "envelope", "ipFilter", "accepted", "refused", "rules"]);
      expect(line.messageId).toMatch(/^[0-9a-v]{40}$/);
    }
  });

  it("prints the documented shape, the action's own fields, skipped actions and the stop", async () => {
    const { code, stdout } = await receiptd(
      "replay",
      "samples/noreply.eml",
      "--rules",
      "rules/example.json",
      "--json",
    );
    expect(code).toBe(0);
    const [line] = jsonLines(stdout);
    expect(line).toMatchObject({
      file: "samples/noreply.eml",
      envelope: { mailFrom: "carol@example.net", recipients: ["noreply@example.com", "stranger@example.net", "payroll@example.com"] },
      ipFilter: { decision: "none", filter: null },
      accepted: ["noreply@example.com", "payroll@example.com"],
      refused: [{ recipient: "stranger@example.net", reply: "550 5.7.1 Relaying denied" }],
      rules: [
        {
          name: "no-reply",
          recipients: ["noreply@example.com"],
          actions: [
            {
              type: "Bounce",
              outcome: "done",
              SmtpReplyCode: "550",
              StatusCode: "5.1.1",
              Message: "This address does not accept mail.",
              Sender: "mailer-daemon@example.com",
            },
            { type: "Stop", outcome: "done", Scope: "RuleSet" },
          ],
          stop: "Stop",
        },
      ],
    });
  });

  it("takes the envelope and Lambda results from the command line", async () => {
    const { stdout } = await receiptd(
      "replay",
      "samples/plain.eml",
      "--rules",
      "rules/example.json",
      "--from",
      "",
      "--to",
      "abuse@example.org",
      "--to",
      "info@example.com",
      "--lambda-result",
      "arn:aws:lambda:us-east-1:123456789012:function:triage-abuse=stop_rule",
      "--json",
    );
    const [line] = jsonLines(stdout) as [{ envelope: unknown; rules: { name: string; stop: string | null; actions: { outcome: string; disposition?: string }[] }[] }];
    expect(line.envelope).toEqual({ mailFrom: "", recipients: ["abuse@example.org", "info@example.com"] });
    expect(line.rules.map((r) => [r.name, r.stop])).toEqual([
      ["abuse-reports", "STOP_RULE"],
      ["company-notify", null],
      ["archive-everything", null],
    ]);
    expect(line.rules[0]!.actions.map((a) => a.outcome)).toEqual(["done", "done", "skipped"]);
    expect(line.rules[0]!.actions[1]!.disposition).toBe("stop_rule");
  });

  it("applies IP filters and TLS: a blocked client gets nothing accepted, TLS-only rules need --tls", async () => {
    const blocked = jsonLines(
      (await receiptd("replay", "samples/plain.eml", "--rules", "rules/example.json", "--filters", "rules/filters.json", "--client-ip", "203.0.113.9", "--json")).stdout,
    )[0];
    expect(blocked).toMatchObject({
      ipFilter: { decision: "block", filter: "known-spam-range" },
      accepted: [],
      refused: [{ recipient: "info@example.com", reply: "554 5.7.1 Access denied" }],
      rules: [],
    });
    const allowed = jsonLines(
      (await receiptd("replay", "samples/plain.eml", "--rules", "rules/example.json", "--filters", "rules/filters.json", "--client-ip", "203.0.113.25", "--json")).stdout,
    )[0];
    expect(allowed).toMatchObject({ ipFilter: { decision: "allow", filter: "partner-relay" }, accepted: ["info@example.com"] });

    const plain = jsonLines((await receiptd("replay", "samples/plain.eml", "--rules", "rules/secure-only.json", "--to", "payroll@example.com", "--json")).stdout)[0];
    expect(plain).toMatchObject({ accepted: [], refused: [{ reply: "530 5.7.0 Must issue a STARTTLS command first" }] });
    const tls = jsonLines((await receiptd("replay", "samples/plain.eml", "--rules", "rules/secure-only.json", "--to", "payroll@example.com", "--tls", "--json")).stdout)[0];
    expect(tls).toMatchObject({ accepted: ["payroll@example.com"], rules: [{ name: "payroll-requires-tls" }, { name: "everyone-else" }] });
  });

  it("--identity replaces the identities implied by the rule set", async () => {
    const { stdout } = await receiptd("replay", "samples/plain.eml", "--rules", "rules/example.json", "--identity", "example.org", "--json");
    expect(jsonLines(stdout)[0]).toMatchObject({ accepted: [], refused: [{ recipient: "info@example.com", reply: "550 5.7.1 Relaying denied" }] });
  });

  it("a message of tens of megabytes is replayed without being held whole, and strict mode flags SES's action limits", async () => {
    const big = join(scratch, "big.eml");
    const file = await open(big, "w");
    await file.write("From: a@example.net\r\nTo: info@example.com\r\nSubject: big\r\n\r\n");
    const chunk = Buffer.alloc(1024 * 1024, "x\r\n");
    for (let i = 0; i < 42; i++) await file.write(chunk);
    await file.close();
    const { code, stdout } = await receiptd("replay", big, "--rules", "rules/example.json", "--json");
    expect(code).toBe(3);
    const [line] = jsonLines(stdout) as [{ rules: { name: string; actions: { type: string; outcome: string; error?: string }[] }[] }];
    const sns = line.rules[0]!.actions[0]!;
    expect(sns).toMatchObject({ type: "SNS", outcome: "failed" });
    expect(sns.error).toMatch(/exceeds the SNS action limit of 153600 bytes/);
  });

  it("an unreadable or malformed file gets its own error, the rest are replayed, exit code 1", async () => {
    const dir = join(scratch, "mixed");
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "a-good.eml"), "From: a@example.net\r\nTo: info@example.com\r\n\r\nhi\r\n");
    await writeFile(join(dir, "b-empty.eml"), "");
    await writeFile(join(dir, "c-garbage.eml"), "this is not a message\r\nat all\r\n");
    await writeFile(join(dir, "d-good.eml"), "From: b@example.net\r\nTo: user@example.com\r\n\r\nhi\r\n");
    const { code, stdout } = await receiptd("replay", dir, join(scratch, "missing.eml"), "--rules", "rules/example.json", "--json");
    expect(code).toBe(1);
    const lines = jsonLines(stdout);
    expect(lines.map((l) => [l.file, "error" in l])).toEqual([
      [join(dir, "a-good.eml"), false],
      [join(dir, "b-empty.eml"), true],
      [join(dir, "c-garbage.eml"), true],
      [join(dir, "d-good.eml"), false],
      [join(scratch, "missing.eml"), true],
    ]);
    expect(lines[1]!.error).toMatch(/empty/);
    expect(lines[2]!.error).toMatch(/line 1/);
    expect(lines[4]!.error).toMatch(/no such file/);
  });

  it("the human-readable trace names rules, actions, refusals and a summary", async () => {
    const { code, stdout } = await receiptd("replay", "samples/noreply.eml", "samples/multipart.eml", "--rules", "rules/example.json");
    expect(code).toBe(0);
    expect(stdout).toContain("refused stranger@example.net: 550 5.7.1 Relaying denied");
    expect(stdout).toContain("rule no-reply for noreply@example.com");
    expect(stdout).toContain('+ Bounce 550 5.1.1 "This address does not accept mail." to carol@example.net');
    expect(stdout).toContain("stopped by a Stop action");
    expect(stdout).toContain("+ AddHeader X-Queue: billing");
    expect(stdout).toMatch(/2 message\(s\): \d+ recipient\(s\) accepted, 1 refused, 0 unreadable/);
  });

  it("replays a ConnectAction as the daemon runs it: a permanent failure by name, later actions skipped", async () => {
    const rules = join(scratch, "connect.json");
    const instance = "arn:aws:connect:us-east-1:123456789012:instance/a1b2c3d4-5678-90ab-cdef-EXAMPLE11111";
    const role = "arn:aws:iam::123456789012:role/ses-connect";
    await writeFile(
      rules,
      JSON.stringify({
        Rules: [
          {
            Name: "contact",
            Enabled: true,
            Recipients: ["example.com"],
            Actions: [{ ConnectAction: { InstanceARN: instance, IAMRoleARN: role } }, { S3Action: { BucketName: "after" } }],
          },
        ],
      }),
    );
    const text = await receiptd("replay", "samples/noreply.eml", "--rules", rules);
    // An action failed: exit 3, as for any failed action.
    expect(text.code).toBe(3);
    expect(text.stdout).toContain(
      `! Connect ${instance} (role ${role}): permanent failure: ConnectAction is not supported by receiptd: `,
    );
    expect(text.stdout).toContain("- S3 s3://after/");
    const json = await receiptd("replay", "samples/noreply.eml", "--rules", rules, "--json");
    const [line] = jsonLines(json.stdout);
    const [action] = (line!.rules as { actions: Record<string, unknown>[] }[])[0]!.actions;
    expect(action).toMatchObject({ type: "Connect", outcome: "failed", failure: "permanent", InstanceARN: instance, IAMRoleARN: role });
  });

  it("bad usage and invalid rule sets exit 2 with the reason", async () => {
    expect((await receiptd("replay", "samples")).code).toBe(2);
    expect((await receiptd("replay", "--rules", "rules/example.json")).code).toBe(2);
    expect((await receiptd("replay", "samples", "--rules", "rules/example.json", "--bogus")).code).toBe(2);
    expect((await receiptd("replay", "samples", "--rules", "rules/example.json", "--client-ip", "nope")).code).toBe(2);
    expect((await receiptd("replay", "samples", "--rules", "rules/example.json", "--lambda-result", "no-equals")).code).toBe(2);
    expect((await receiptd("frobnicate")).code).toBe(2);

    const invalid = join(scratch, "invalid.json");
    await writeFile(
      invalid,
      JSON.stringify({
        Rules: [
          { Name: "ok", Enabled: true, Actions: [{ BounceAction: { SmtpReplyCode: "250", Message: "m", Sender: "s@example.com" } }] },
          { Name: "bad name!", Actions: [{ AddHeaderAction: { HeaderName: "X", HeaderValue: "a\nb" } }] },
        ],
      }),
    );
    const result = await receiptd("replay", "samples", "--rules", invalid);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe("");
    expect(result.stderr).toContain("Rules[0].Actions[0].BounceAction.SmtpReplyCode");
    expect(result.stderr).toContain("Rules[1].Name");
    expect(result.stderr).toContain("Rules[1].Actions[0].AddHeaderAction.HeaderValue");
  });
});

describe("receiptd replay exit codes", () => {
  const localConfig = async (name: string) => {
    const config = join(scratch, `${name}.json`);
    await writeFile(config, JSON.stringify({ dataDir: join(scratch, `${name}-data`) }));
    return config;
  };

  it("an action that failed (no handler for a Lambda) exits 3, and the summary counts it", async () => {
    const config = await localConfig("no-handlers");
    const { code, stdout } = await receiptd("replay", "samples/plain.eml", "--rules", "rules/example.json", "--executor", "local", "--config", config);
    expect(code).toBe(3);
    expect(stdout).toContain("! Lambda arn:aws:lambda:us-east-1:123456789012:function:index-message (Event): permanent failure: no Lambda handler");
    expect(stdout).toContain("1 message(s): 1 recipient(s) accepted, 0 refused, 0 unreadable, 1 with a failed action");
  });

  it("an unreadable file exits 1 even when an action failed too; a clean replay exits 0", async () => {
    const config = await localConfig("mixed-failures");
    const both = await receiptd("replay", "samples/plain.eml", join(scratch, "absent.eml"), "--rules", "rules/example.json", "--executor", "local", "--config", config, "--json");
    expect(both.code).toBe(1);
    expect((await receiptd("replay", "samples/noreply.eml", "--rules", "rules/example.json")).code).toBe(0);
  });

  it("the help lists every exit code", async () => {
    const { code, stdout } = await receiptd("help", "replay");
    expect(code).toBe(0);
    for (const line of [/^ {2}0 {2}every file replayed/m, /^ {2}1 {2}some file could not be read/m, /^ {2}2 {2}bad usage/m, /^ {2}3 {2}an action failed/m]) {
      expect(stdout).toMatch(line);
    }
  });

  it("a --lambda-result for a function whose result is never used (an Event invocation) is a usage error too", async () => {
    const event = "arn:aws:lambda:us-east-1:123456789012:function:legacy-forward";
    const { code, stderr } = await receiptd("replay", "samples/plain.eml", "--rules", "rules/example.json", "--lambda-result", `${event}=STOP_RULE`);
    expect(code).toBe(2);
    expect(stderr).toContain(`--lambda-result "${event}": no RequestResponse Lambda action`);
    expect(stderr).not.toContain(`\n  ${event}\n`);
  });

  it("a --lambda-result for a function no Lambda action calls is a usage error listing the rule set's functions", async () => {
    const typo = "arn:aws:lambda:us-east-1:123456789012:function:triage-abuze";
    const { code, stdout, stderr } = await receiptd("replay", "samples/plain.eml", "--rules", "rules/example.json", "--lambda-result", `${typo}=STOP_RULE`);
    expect(code).toBe(2);
    expect(stdout).toBe("");
    expect(stderr).toContain(`--lambda-result "${typo}"`);
    for (const name of ["triage-abuse"]) {
      expect(stderr).toContain(`arn:aws:lambda:us-east-1:123456789012:function:${name}`);
    }
  });

  it("a failed S3 action's line shows the message's real object key, not a placeholder", async () => {
    const rules = join(scratch, "s3-only.json");
    await writeFile(
      rules,
      JSON.stringify({ Rules: [{ Name: "archive", Enabled: true, Recipients: ["example.com"], Actions: [{ S3Action: { BucketName: "archive", ObjectKeyPrefix: "in/" } }] }] }),
    );
    // Over SES's 40 MB S3 limit without writing 40 MB: the body is a hole in a sparse file.
    const huge = join(scratch, "huge.eml");
    await writeFile(huge, "From: a@example.net\r\nTo: info@example.com\r\nSubject: huge\r\n\r\n");
    const file = await open(huge, "r+");
    await file.truncate(41 * 1024 * 1024);
    await file.close();
    const { code, stdout } = await receiptd("replay", huge, "--rules", rules);
    expect(code).toBe(3);
    const messageId = stdout.split("\n")[0]!.split("  ")[1]!;
    expect(messageId).toMatch(/^[0-9a-v]{40}$/);
    expect(stdout).toContain(`! S3 s3://archive/in/${messageId}: permanent failure:`);
    expect(stdout).not.toContain("<messageId>");
  });
});

describe("receiptd replay --executor local", () => {
  it("runs every action for real under the data directory, with no network", async () => {
    const dataDir = join(scratch, "local-data");
    const config = join(scratch, "local.json");
    await writeFile(
      config,
      JSON.stringify({
        dataDir,
        local: {
          lambdaHandlers: {
            "arn:aws:lambda:us-east-1:123456789012:function:triage-abuse": join(root, "rules/handlers/triage-abuse.mjs"),
            "arn:aws:lambda:us-east-1:123456789012:function:index-message": join(root, "rules/handlers/index-message.mjs"),
          },
        },
      }),
    );
    const { code, stdout } = await receiptd("replay", "samples", "--rules", "rules/example.json", "--executor", "local", "--config", config, "--json");
    expect(code).toBe(0);
    const lines = jsonLines(stdout) as { messageId: string; rules: { name: string; actions: { type: string; outcome: string }[] }[] }[];
    const outcomes = lines.flatMap((l) => l.rules.flatMap((r) => r.actions.map((a) => a.outcome)));
    expect(outcomes).not.toContain("failed");

    const plain = lines.find((l) => l.rules.some((r) => r.name === "archive-everything"))!;
    const stored = await readFile(join(dataDir, "s3", "receiptd-archive", "all", plain.messageId));
    expect(stored.length).toBeGreaterThan(100);
    for (const topic of ["inbound", "indexed", "billing", "support", "bounced", "stopped", "abuse-stored"]) {
      const published = (await readFile(join(dataDir, "sns", `${topic}.jsonl`), "utf8")).trim().split("\n");
      for (const line of published) expect(JSON.parse((JSON.parse(line) as { message: string }).message).notificationType).toBe("Received");
    }
    const triage = (await readFile(join(dataDir, "lambda", "triage-abuse.jsonl"), "utf8")).trim().split("\n");
    expect(JSON.parse(triage[0]!)).toMatchObject({ invocationType: "RequestResponse", result: { disposition: "CONTINUE" } });
    expect(await readdir(join(dataDir, "outbox"))).toHaveLength(1);
    const mailbox = join(dataDir, "workmail", "m-68755160c4cb4e29a2b2f8fb58f359d7", "support+billing@example.com", "new");
    const [delivered] = await readdir(mailbox);
    expect((await readFile(join(mailbox, delivered!), "utf8")).startsWith("X-Queue: billing\r\n")).toBe(true);
  });

  it("refuses options that do not go together", async () => {
    expect((await receiptd("replay", "samples", "--rules", "rules/example.json", "--executor", "cloud")).code).toBe(2);
    expect((await receiptd("replay", "samples", "--rules", "rules/example.json", "--config", "rules/example.config.json")).code).toBe(2);
    const both = await receiptd("replay", "samples", "--rules", "rules/example.json", "--executor", "local", "--lambda-result", "arn:aws:lambda:us-east-1:123456789012:function:f=STOP_RULE");
    expect(both.code).toBe(2);
    const badConfig = join(scratch, "bad-config.json");
    await writeFile(badConfig, JSON.stringify({ backends: { S3: "gcs" } }));
    const bad = await receiptd("replay", "samples", "--rules", "rules/example.json", "--executor", "local", "--config", badConfig);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("config.backends.S3");
  });
});

describe("receiptd validate", () => {
  it("accepts the example rule sets and filters", async () => {
    for (const file of ["rules/example.json", "rules/secure-only.json"]) {
      const { code, stdout } = await receiptd("validate", file, "--filters", "rules/filters.json");
      expect(code, file).toBe(0);
      expect(stdout).toContain("is valid");
    }
  });

  it("prints every error with its path and exits 2", async () => {
    const rulesFile = join(scratch, "many-errors.json");
    await writeFile(
      rulesFile,
      JSON.stringify({
        Metadata: { Name: "-bad" },
        Rules: [
          { Name: "a", Enabled: "yes", TlsPolicy: "Always", Actions: [{ SNSAction: { TopicArn: "nope", Encoding: "UTF8" } }] },
          { Name: "a", Recipients: ["not an address"], Actions: [{ StopAction: { Scope: "Rule" } }] },
        ],
      }),
    );
    const filtersFile = join(scratch, "bad-filters.json");
    await writeFile(filtersFile, JSON.stringify({ Filters: [{ Name: "f", IpFilter: { Policy: "Deny", Cidr: "10.0.0.0/33" } }] }));
    const { code, stderr } = await receiptd("validate", rulesFile, "--filters", filtersFile);
    expect(code).toBe(2);
    for (const path of [
      "Metadata.Name",
      "Rules[0].Enabled",
      "Rules[0].TlsPolicy",
      "Rules[0].Actions[0].SNSAction.TopicArn",
      "Rules[0].Actions[0].SNSAction.Encoding",
      "Rules[1].Name",
      "Rules[1].Recipients[0]",
      "Rules[1].Actions[0].StopAction.Scope",
      "Filters[0].IpFilter.Policy",
      "Filters[0].IpFilter.Cidr",
    ]) {
      expect(stderr, path).toContain(path);
    }
  });

  it("reports a JSON syntax error with its line and column", async () => {
    const file = join(scratch, "syntax.json");
    await writeFile(file, '{\n  "Rules": [\n    { "Name": "a", }\n  ]\n}\n');
    const { code, stderr } = await receiptd("validate", file);
    expect(code).toBe(2);
    expect(stderr).toMatch(/line 3/);
  });
});
