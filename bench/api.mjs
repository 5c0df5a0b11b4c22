// SES API throughput and how fast the MX follows it: signed requests per second from parallel
// clients (DescribeActiveReceiptRuleSet on a 200-rule active set, CreateReceiptRule into a set
// growing to 200 rules), and the time from a SetActiveReceiptRuleSet response to the first
// RCPT TO the new set decides. Run with `npm run bench:api`. No peer runs here offline (moto
// and LocalStack need PyPI or Docker), so there is no ratio.
import { mkdtemp, rm } from "node:fs/promises";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import {
  CreateReceiptRuleCommand,
  CreateReceiptRuleSetCommand,
  DeleteReceiptRuleSetCommand,
  DescribeActiveReceiptRuleSetCommand,
  SESClient,
  SetActiveReceiptRuleSetCommand,
  VerifyDomainIdentityCommand,
} from "@aws-sdk/client-ses";
import { parseConfig } from "../dist/config/config.js";
import { startDaemon } from "../dist/daemon/daemon.js";
import { createLogger } from "../dist/ops/log.js";
import { Writable } from "node:stream";

const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 8);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const FLIPS = Number(process.env.BENCH_FLIPS ?? 20);

const dir = await mkdtemp(join(tmpdir(), "receiptd-bench-api-"));
const config = parseConfig(
  {
    hostname: "mx.bench.test",
    dataDir: join(dir, "data"),
    smtp: { listen: [{ host: "127.0.0.1", port: 0 }], reverseDns: false },
    authentication: { enabled: false },
    admin: null,
    api: { host: "127.0.0.1", port: 0 },
  },
  { source: "bench", baseDir: dir, env: {} },
);
const quiet = new Writable({ write: (_chunk, _encoding, done) => done() });
const daemon = await startDaemon(config, { logger: createLogger({ stream: quiet, format: "json" }) });
const { host, port } = daemon.apiAddress();
const clients = Array.from({ length: CLIENTS }, () => new SESClient({ endpoint: `http://${host}:${port}`, region: "us-east-1", credentials: { accessKeyId: "test", secretAccessKey: "test" }, maxAttempts: 1 }));
const ses = clients[0];

const rule = (name, domain) => ({ Name: name, Enabled: true, Recipients: [domain], Actions: [{ S3Action: { BucketName: "mail", ObjectKeyPrefix: `${name}/` } }] });

async function fill(set, count, domain = "example.com") {
  await ses.send(new CreateReceiptRuleSetCommand({ RuleSetName: set }));
  for (let i = 0; i < count; i++) await ses.send(new CreateReceiptRuleCommand({ RuleSetName: set, Rule: rule(`r${i}`, i === 0 ? domain : `d${i}.${domain}`) }));
}

/** Requests per second of `call` from every client at once, for SECONDS. */
async function rate(call) {
  const end = performance.now() + SECONDS * 1000;
  let done = 0;
  const started = performance.now();
  await Promise.all(clients.map(async (client, index) => {
    while (performance.now() < end) {
      await call(client, index, done);
      done++;
    }
  }));
  return done / ((performance.now() - started) / 1000);
}

process.stderr.write("filling a 200-rule set ...\n");
await fill("big", 200);
await ses.send(new SetActiveReceiptRuleSetCommand({ RuleSetName: "big" }));
const describe = await rate((client) => client.send(new DescribeActiveReceiptRuleSetCommand({})));

// CreateReceiptRule: each client fills its own set up to 200 rules, then starts a new one.
const counters = clients.map(() => ({ set: 0, rules: 200 }));
const create = await rate(async (client, index) => {
  const counter = counters[index];
  if (counter.rules >= 200) {
    counter.set++;
    counter.rules = 0;
    await client.send(new CreateReceiptRuleSetCommand({ RuleSetName: `c${index}-${counter.set}` }));
    if (counter.set > 1) await client.send(new DeleteReceiptRuleSetCommand({ RuleSetName: `c${index}-${counter.set - 1}` }));
  }
  await client.send(new CreateReceiptRuleCommand({ RuleSetName: `c${index}-${counter.set}`, Rule: rule(`r${counter.rules++}`, "example.com") }));
});

// Two sets that accept different recipients; after each switch, RCPT on new connections until the answer flips.
await ses.send(new VerifyDomainIdentityCommand({ Domain: "one.example" }));
await ses.send(new VerifyDomainIdentityCommand({ Domain: "two.example" }));
await fill("one", 1, "one.example");
await fill("two", 1, "two.example");
const smtpPort = daemon.addresses()[0].port;
function rcpt(to) {
  return new Promise((resolve, reject) => {
    const socket = createConnection(smtpPort, "127.0.0.1");
    let buffer = "";
    let step = 0;
    const commands = ["EHLO bench.test\r\n", "MAIL FROM:<a@bench.test>\r\n", `RCPT TO:<${to}>\r\n`];
    socket.setEncoding("utf8");
    socket.on("data", (data) => {
      buffer += data;
      const lines = buffer.split("\r\n");
      const last = lines.filter((line) => /^\d{3} /.test(line)).at(-1);
      if (!last) return;
      buffer = "";
      if (step === 3) {
        socket.end("QUIT\r\n");
        resolve(last.startsWith("250"));
        return;
      }
      socket.write(commands[step++]);
    });
    socket.on("error", reject);
  });
}
const lags = [];
for (let i = 0; i < FLIPS; i++) {
  const target = i % 2 === 0 ? "one" : "two";
  await ses.send(new SetActiveReceiptRuleSetCommand({ RuleSetName: target }));
  const responded = performance.now();
  while (!(await rcpt(`x@${target}.example`))) { /* until the new set decides */ }
  lags.push(performance.now() - responded);
}
lags.sort((a, b) => a - b);
const pct = (p) => lags[Math.min(lags.length - 1, Math.floor((p / 100) * lags.length))];

console.log(`SES API, ${CLIENTS} signed clients in parallel, ${SECONDS} s each:`);
console.log(`  DescribeActiveReceiptRuleSet (200-rule set): ${describe.toFixed(0)} req/s`);
console.log(`  CreateReceiptRule (sets growing to 200 rules, fsync'd): ${create.toFixed(0)} req/s`);
console.log(`  SetActiveReceiptRuleSet response -> first RCPT decided by the new set (incl. one SMTP session): median ${pct(50).toFixed(1)} ms, p95 ${pct(95).toFixed(1)} ms over ${FLIPS} switches`);
console.log("  peer: none runs here offline (moto and LocalStack need PyPI or Docker); no ratio");
await daemon.stop(1000);
await rm(dir, { recursive: true, force: true });
