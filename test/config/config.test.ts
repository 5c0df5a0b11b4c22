import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adminPublicUrl, ConfigError, defaultConfig, loadConfigFile, parseConfig } from "../../src/config/config.js";
import { DEFAULTS } from "../../src/config/defaults.js";
import { authenticateMessage } from "../../src/mail/auth.js";

const ORG = "arn:aws:workmail:us-east-1:123456789012:organization/m-68755160c4cb4e29a2b2f8fb58f359d7";
const parse = (doc: unknown, env: NodeJS.ProcessEnv = {}) => parseConfig(doc, { source: "test.json", baseDir: "/srv/receiptd", env });

function issuesOf(doc: unknown, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parse(doc, env);
  } catch (error) {
    if (error instanceof ConfigError) return error.issues;
    throw error;
  }
  throw new Error("expected a ConfigError");
}

describe("configuration", () => {
  it("the embedded default runs everything locally under ./data, in store mode seeded with the example rule set, on 127.0.0.1:2525", async () => {
    const config = await defaultConfig({ env: {} });
    expect(config.backends).toEqual({ S3: "local", SNS: "local", Lambda: "local", Bounce: "outbox", WorkMail: "maildir" });
    expect(config.dataDir).toBe(resolve("data"));
    expect(config.strict).toBe(true);
    expect(config.serve.rules).toBeUndefined();
    expect(config.serve.seed).toEqual({ rules: resolve("rules/example.json"), filters: resolve("rules/filters.json") });
    expect(config.serve.api).toMatchObject({ host: "127.0.0.1", port: 4579, credentials: [{ accessKeyId: "test", account: "123456789012", loopbackOnly: true }] });
    expect(config.serve.state).toMatchObject({ dir: resolve("data/state"), account: "123456789012", region: "us-east-1", verification: "auto" });
    expect(Object.keys(config.local.lambdaHandlers)).toHaveLength(2);
    expect(config.serve.smtp.listen).toEqual([{ host: "127.0.0.1", port: 2525, implicitTls: false }]);
    expect(config.serve.spool.dir).toBe(resolve("data/spool"));
    expect(config.serve.admin).toEqual({ host: "127.0.0.1", port: 9025 });
  });

  it("serve settings: listeners, TLS files, limits, spool and processing", () => {
    const config = parse({
      rules: "rules.json",
      identities: ["example.com"],
      smtp: {
        listen: [
          { host: "0.0.0.0", port: 25 },
          { host: "::", port: 25 },
          { host: "0.0.0.0", port: 465, implicitTls: true },
        ],
        tls: { cert: "tls/cert.pem", key: "tls/key.pem" },
        proxyProtocolFrom: ["10.0.0.0/8"],
        maxRecipients: 50,
        processes: 4,
      },
      spool: { retentionHours: 48 },
      processing: { concurrency: 4 },
      admin: null,
    });
    expect(config.serve.rules).toBe("/srv/receiptd/rules.json");
    expect(config.serve.smtp.listen[2]).toEqual({ host: "0.0.0.0", port: 465, implicitTls: true });
    expect(config.serve.smtp.tls).toEqual({ cert: "/srv/receiptd/tls/cert.pem", key: "/srv/receiptd/tls/key.pem" });
    expect(config.serve.smtp.maxRecipients).toBe(50);
    expect(config.serve.smtp.maxMessageBytes).toBe(40 * 1024 * 1024);
    expect(config.serve.smtp.processes).toBe(4);
    expect(parse({}).serve.smtp.processes).toBe(1);
    expect(issuesOf({ smtp: { processes: 0 } })[0]).toMatch(/^config\.smtp\.processes: /);
    expect(issuesOf({ smtp: { processes: 1.5 } })[0]).toMatch(/^config\.smtp\.processes: /);
    expect(config.serve.spool).toEqual({ dir: "/srv/receiptd/data/spool", retentionHours: 48 });
    expect(config.serve.processing.retryWindowMinutes).toBe(240);
    expect(config.serve.admin).toBeNull();
    expect(issuesOf({ smtp: { listen: [{ host: "0.0.0.0", port: 465, implicitTls: true }] } })).toContain(
      "config.smtp.listen: an implicitTls listener needs config.smtp.tls",
    );
    expect(issuesOf({ smtp: { listen: [] } })[0]).toMatch(/^config.smtp.listen: expected a non-empty list/);
  });

  it("local SNS signing: SignatureVersion 1 by default, 1 or 2; the admin URL that signed envelopes point at", () => {
    expect(parse({}).local.snsSignatureVersion).toBe("1");
    expect(parse({ local: { snsSignatureVersion: 2 } }).local.snsSignatureVersion).toBe("2");
    expect(parse({ local: { snsSignatureVersion: "2" } }).local.snsSignatureVersion).toBe("2");
    expect(issuesOf({ local: { snsSignatureVersion: 3 } })[0]).toMatch(/^config\.local\.snsSignatureVersion: expected one of "1", "2"/);

    expect(adminPublicUrl(parse({ admin: { host: "127.0.0.1", port: 9025 } }))).toBe("http://127.0.0.1:9025");
    expect(adminPublicUrl(parse({ admin: { host: "127.0.0.1", port: 0 } }), 4321)).toBe("http://127.0.0.1:4321");
    expect(adminPublicUrl(parse({ hostname: "mx.example.com", admin: { host: "0.0.0.0", port: 9025 } }))).toBe("http://mx.example.com:9025");
    expect(adminPublicUrl(parse({ admin: { host: "::1", port: 9025 } }))).toBe("http://[::1]:9025");
    expect(adminPublicUrl(parse({ admin: { port: 9025, url: "https://receiptd.example.com/admin/" } }))).toBe("https://receiptd.example.com/admin");
    expect(adminPublicUrl(parse({ admin: null }))).toBeNull();
    expect(issuesOf({ admin: { url: "ftp://x" } })[0]).toMatch(/^config\.admin\.url: expected a URL starting with http:\/\/ or https:\/\//);
  });

  it("a preset and per-action choices, relative paths against the file's folder", () => {
    const config = parse({
      backend: "aws",
      backends: { Lambda: "local" },
      dataDir: "spool/data",
      aws: { region: "eu-west-1", s3: { endpoint: "http://127.0.0.1:4568", forcePathStyle: true } },
      local: { lambdaHandlers: { "arn:aws:lambda:eu-west-1:123456789012:function:f": "./handlers/f.mjs" } },
      bounce: { relay: "smtp://relay.example.com:587" },
      workmail: { organizations: { [ORG]: { host: "127.0.0.1", port: 24, lmtp: true } } },
    });
    expect(config.backends).toEqual({ S3: "aws", SNS: "aws", Lambda: "local", Bounce: "relay", WorkMail: "smtp" });
    expect(config.dataDir).toBe("/srv/receiptd/spool/data");
    expect(config.aws.s3).toEqual({ endpoint: "http://127.0.0.1:4568", forcePathStyle: true });
    expect(config.workmail.organizations[ORG]).toEqual({ host: "127.0.0.1", port: 24, lmtp: true });
  });

  it("the environment overrides the data directory, host name and bounce relay", () => {
    const config = parse({ dataDir: "a" }, { RECEIPTD_DATA_DIR: "/var/lib/receiptd", RECEIPTD_HOSTNAME: "mx.example.com", RECEIPTD_BOUNCE_RELAY: "smtp://127.0.0.1:2526" });
    expect(config.dataDir).toBe("/var/lib/receiptd");
    expect(config.hostname).toBe("mx.example.com");
    expect(config.backends.Bounce).toBe("relay");
  });

  it("reports every problem with its path", () => {
    const issues = issuesOf({
      strict: "yes",
      backend: "cloud",
      backends: { S3: "gcs", Bounce: "relay", Queue: "x" },
      aws: { region: "mars", s3: { endpoint: "ftp://x", bogus: 1 } },
      local: { snsHttpSubscriptions: { "not-an-arn": ["mailto:x"] }, lambdaHandlers: { "arn:aws:lambda:us-east-1:123456789012:function:f": 3 } },
      workmail: { organizations: { [ORG]: { host: "", port: 70000 } } },
      colour: "blue",
    });
    for (const expected of [
      "config.colour: unknown key",
      "config.strict: expected true or false",
      'config.backend: expected one of "local", "aws"',
      'config.backends.S3: expected one of "aws", "local"',
      "config.backends.Queue: unknown key",
      'config.backends.Bounce: "relay" needs config.bounce.relay',
      "config.aws.region: expected an AWS region",
      "config.aws.s3.endpoint: expected a URL starting with http:// or https://",
      "config.aws.s3.bogus: unknown key",
      'config.local.snsHttpSubscriptions["not-an-arn"]: expected a topic ARN',
      'config.local.snsHttpSubscriptions["not-an-arn"][0]: expected a URL',
      'config.local.lambdaHandlers["arn:aws:lambda:us-east-1:123456789012:function:f"]: expected the path of a JavaScript module',
      `config.workmail.organizations["${ORG}"].host`,
      `config.workmail.organizations["${ORG}"].port: expected a whole number from 1 to 65535`,
    ]) {
      expect(issues.some((issue) => issue.startsWith(expected)), `${expected}\n${issues.join("\n")}`).toBe(true);
    }
  });

  it("host names: RFC 1123 labels only, no empty label, no dot or hyphen at a label's end", () => {
    for (const good of ["mx.example.com", "localhost", "a", "mx-1.example.com", "xn--bcher-kva.example"]) {
      expect(parse({ hostname: good }).hostname).toBe(good);
      expect(parse({ admin: { host: good } }).serve.admin!.host).toBe(good);
    }
    for (const bad of ["...", "a..b", ".example.com", "example.com.", "-mx.example.com", "mx-.example.com", "mx_1.example.com", "1.2.3", "a".repeat(64)]) {
      expect(issuesOf({ hostname: bad })).toEqual([`config.hostname: expected a host name, found ${JSON.stringify(bad)}`]);
      expect(issuesOf({ smtp: { listen: [{ host: bad, port: 25 }] } })[0]).toMatch(/^config\.smtp\.listen\[0\]\.host: expected an IP address or host name/);
      expect(issuesOf({ admin: { host: bad } })[0]).toMatch(/^config\.admin\.host: expected an IP address or host name/);
    }
    for (const address of ["0.0.0.0", "127.0.0.1", "::", "::1", "fe80::1", "::ffff:10.0.0.1"]) {
      expect(parse({ smtp: { listen: [{ host: address, port: 25 }] } }).serve.smtp.listen[0]!.host).toBe(address);
    }
    for (const bad of ["1.2.3.999", "1:2:3", ":::"]) {
      expect(issuesOf({ smtp: { listen: [{ host: bad, port: 25 }] } })[0]).toMatch(/^config\.smtp\.listen\[0\]\.host: /);
    }
  });

  it("fills what a file leaves out from the one defaults object", () => {
    const { serve } = parse({});
    expect(serve.smtp).toMatchObject({ ...DEFAULTS.smtp, listen: [{ ...DEFAULTS.smtp.listen, implicitTls: false }] });
    expect(serve.authentication).toEqual(DEFAULTS.authentication);
    expect(serve.spool.retentionHours).toBe(DEFAULTS.spool.retentionHours);
    expect(serve.processing).toEqual(DEFAULTS.processing);
    expect(serve.admin).toEqual(DEFAULTS.admin);
    expect(serve.shutdownGraceMs).toBe(DEFAULTS.shutdownGraceMs);
  });

  it("the data directory, spool, strict mode, back end and SNS signature default from the same object", () => {
    const config = parse({});
    expect(config.dataDir).toBe(resolve("/srv/receiptd", DEFAULTS.dataDir));
    expect(config.serve.spool.dir).toBe(join(config.dataDir, DEFAULTS.spoolDirInDataDir));
    expect(config.strict).toBe(DEFAULTS.strict);
    expect(config.backends).toMatchObject({ S3: DEFAULTS.backend, SNS: DEFAULTS.backend, Lambda: DEFAULTS.backend });
    expect(config.local.snsSignatureVersion).toBe(DEFAULTS.snsSignatureVersion);
  });

  it("takes authentication.workers from 1 to 64, naming the field otherwise", () => {
    expect(parse({ authentication: { workers: 2 } }).serve.authentication.workers).toBe(2);
    expect(DEFAULTS.authentication.workers).toBeGreaterThanOrEqual(1);
    expect(() => parse({ authentication: { workers: 0 } })).toThrow(/config\.authentication\.workers/);
  });

  it("the DNS authentication budget defaults to the configuration's 3 s in the library too", async () => {
    expect(parse({}).serve.authentication.dnsTimeoutMs).toBe(3000);
    const message = Buffer.from("From: a@example.com\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nHello.\r\n");
    const started = Date.now();
    const result = await authenticateMessage(
      { message, ip: "192.0.2.1", helo: "mail.example.com", mailFrom: "a@example.com", hostname: "mx.receiptd.test" },
      { resolver: () => new Promise(() => {}) },
    );
    // A resolver that never answers: the budget, not a query, ends it (5 s before the defaults were one).
    expect(Date.now() - started).toBeGreaterThanOrEqual(2900);
    expect(Date.now() - started).toBeLessThan(4500);
    expect(result.verdicts.spf).toBe("PROCESSING_FAILED");
  }, 10_000);

  describe("files", () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), "receiptd-config-"));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it("names the file in every error", async () => {
      const file = join(dir, "bad.json");
      await writeFile(file, '{"strict": 1}');
      await expect(loadConfigFile(file, { env: {} })).rejects.toThrow(`${file}: config.strict: expected true or false`);
      await writeFile(file, "{ nope");
      await expect(loadConfigFile(file, { env: {} })).rejects.toThrow(/invalid JSON/);
      await expect(loadConfigFile(join(dir, "missing.json"), { env: {} })).rejects.toThrow(/cannot read the file/);
    });

    it("--executor's preset wins over the file's", async () => {
      const file = join(dir, "aws.json");
      await writeFile(file, '{"backend": "aws", "dataDir": "d"}');
      const config = await loadConfigFile(file, { env: {}, backend: "local" });
      expect(config.backends.S3).toBe("local");
      expect(config.dataDir).toBe(join(dir, "d"));
    });
  });
});
