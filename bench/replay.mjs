// Replay throughput: how many messages per second `receiptd replay` pushes through a
// rule set of SES's maximum size, and where the time goes (reading, parsing, evaluating).
// Run with `npm run bench:replay`; figures vary between runs on a shared machine, so the
// ceiling (merely reading the same files) is measured in the same run for comparison.
import { mkdir, readFile, readdir, writeFile, stat } from "node:fs/promises";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { performance } from "node:perf_hooks";
import { parseRuleSet } from "../dist/rules/load.js";
import { identitiesOfRules } from "../dist/rules/recipients.js";
import { parseMessageHead, readMessageHead } from "../dist/mail/headers.js";
import { replayFiles, replayHead } from "../dist/replay/replay.js";

const here = dirname(fileURLToPath(import.meta.url));
const corpusDir = join(here, ".corpus");
const SMALL = Number(process.env.BENCH_SMALL ?? 10_000);
const LARGE = Number(process.env.BENCH_LARGE ?? 50);
const RULES = 200;
const RECIPIENTS_PER_RULE = 100;
const DOMAINS = 20;

function domainOf(i) {
  return `d${i % DOMAINS}.example.com`;
}

/** 200 rules of 100 entries each, mixing addresses, labelled addresses, domains and subdomain entries. */
function ruleSetJson() {
  const rules = [];
  for (let r = 0; r < RULES; r++) {
    const recipients = [];
    for (let k = 0; k < RECIPIENTS_PER_RULE; k++) {
      const form = (r + k) % 10;
      if (form === 0) recipients.push(`team${r}-${k}.${domainOf(r)}`);
      else if (form === 1) recipients.push(`.r${r}k${k}.${domainOf(k)}`);
      else if (form === 2) recipients.push(`user${r}-${k}+label@${domainOf(k)}`);
      else recipients.push(`user${r}-${k}@${domainOf(r + k)}`);
    }
    const actions = [
      { S3Action: { BucketName: `bucket-${r % 7}`, ObjectKeyPrefix: `rule${r}/` } },
      { SNSAction: { TopicArn: `arn:aws:sns:us-east-1:123456789012:topic-${r % 5}`, Encoding: "UTF-8" } },
    ];
    if (r % 10 === 0) actions.push({ AddHeaderAction: { HeaderName: "X-Rule", HeaderValue: `r${r}` } });
    rules.push({ Name: `rule-${r}`, Enabled: r % 13 !== 0, TlsPolicy: "Optional", Recipients: recipients, Actions: actions, ScanEnabled: false });
  }
  return { Metadata: { Name: "bench", CreatedTimestamp: "2026-11-01T00:00:00.000Z" }, Rules: rules };
}

function recipientsFor(i) {
  // Three envelope recipients a message: two that some rule names, one caught by no rule.
  const r = (i * 7) % RULES;
  const k = (i * 13) % RECIPIENTS_PER_RULE;
  const hit = (r + k) % 10 >= 3 ? `user${r}-${k}@${domainOf(r + k)}` : `someone@team${r}-${k}.${domainOf(r)}`;
  return [hit, `user${(r + 1) % RULES}-${k}+x@${domainOf(r + 1 + k)}`, `nobody${i}@${domainOf(i)}`];
}

function message(i, bodyBytes) {
  const to = recipientsFor(i);
  const headers = [
    `Return-Path: <sender${i}@example.net>`,
    `Received: from mail${i % 50}.example.net (mail${i % 50}.example.net [198.51.100.${i % 250}]) by mx.example.com with ESMTPS id ${i}; Mon, 23 Nov 2026 12:00:00 +0000`,
    `Received: from [10.0.0.${i % 250}] by mail${i % 50}.example.net with ESMTPSA id x${i}; Mon, 23 Nov 2026 11:59:58 +0000`,
    `DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.net; s=s1; h=from:to:subject:date:message-id;\r\n bh=${"A".repeat(43)}=;\r\n b=${"B".repeat(200)}`,
    `From: "Sender ${i}" <sender${i}@example.net>`,
    `To: ${to.slice(0, 2).join(", ")}`,
    `Cc: ${to[2]}`,
    `Subject: =?UTF-8?B?${Buffer.from(`Bench message ${i} ✓`).toString("base64")}?=`,
    `Date: Mon, 23 Nov 2026 12:00:00 +0000`,
    `Message-ID: <bench-${i}@example.net>`,
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=utf-8",
  ];
  const line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n";
  const head = `${headers.join("\r\n")}\r\n\r\n`;
  return head + line.repeat(Math.max(1, Math.ceil((bodyBytes - head.length) / line.length)));
}

async function ensureCorpus() {
  const marker = join(corpusDir, `ready-${SMALL}-${LARGE}`);
  if (await stat(marker).catch(() => null)) return;
  process.stderr.write(`generating corpus in ${corpusDir} ...\n`);
  await mkdir(join(corpusDir, "small"), { recursive: true });
  await mkdir(join(corpusDir, "large"), { recursive: true });
  for (let i = 0; i < SMALL; i++) {
    await writeFile(join(corpusDir, "small", `${String(i).padStart(6, "0")}.eml`), message(i, 10 * 1024));
    if (i % 1000 === 999) process.stderr.write(`  ${i + 1}/${SMALL} small\n`);
  }
  for (let i = 0; i < LARGE; i++) {
    await writeFile(join(corpusDir, "large", `${String(i).padStart(6, "0")}.eml`), message(i, 1024 * 1024));
  }
  await writeFile(marker, "");
}

async function files(kind) {
  const dir = join(corpusDir, kind);
  return (await readdir(dir)).sort().map((name) => join(dir, name));
}

function rate(count, ms) {
  return `${Math.round((count / ms) * 1000).toLocaleString("en-US")} msg/s`;
}

async function timed(fn) {
  const start = performance.now();
  const value = await fn();
  return { ms: performance.now() - start, value };
}

async function measure(kind, settings) {
  const list = await files(kind);
  const n = list.length;

  const fullRead = await timed(async () => {
    for (const file of list) await readFile(file);
  });
  const heads = [];
  const headRead = await timed(async () => {
    for (const file of list) heads.push(await readMessageHead(file));
  });
  const parse = await timed(() => {
    for (const head of heads) parseMessageHead(head.headerBlock);
  });
  const evaluateOnly = await timed(async () => {
    for (let i = 0; i < n; i++) await replayHead(list[i], heads[i], settings);
  });
  let matchedRules = 0;
  const endToEnd = await timed(async () => {
    for await (const outcome of replayFiles(list, settings)) {
      if ("error" in outcome) throw new Error(`${outcome.file}: ${outcome.error}`);
      matchedRules += outcome.trace?.rules.length ?? 0;
    }
  });

  const readMs = headRead.ms - parse.ms;
  const split = readMs + parse.ms + evaluateOnly.ms;
  const pct = (ms) => `${((ms / split) * 100).toFixed(0)}%`;
  console.log(`\n${kind}: ${n} messages of ~${kind === "small" ? "10 KB" : "1 MB"}, ${(matchedRules / n).toFixed(2)} rules matched per message`);
  console.log(`  replay end to end (16 files in flight)  ${rate(n, endToEnd.ms)}`);
  console.log(`  ceiling: reading whole files             ${rate(n, fullRead.ms)}`);
  console.log(`  split, one message at a time: read ${pct(readMs)} (${rate(n, readMs)}), parse ${pct(parse.ms)} (${rate(n, parse.ms)}), evaluate ${pct(evaluateOnly.ms)} (${rate(n, evaluateOnly.ms)})`);
  return { perMessageEvaluateUs: (evaluateOnly.ms / n) * 1000 };
}

await ensureCorpus();
const validation = await timed(() => parseRuleSet(ruleSetJson()));
if (!validation.value.ok) throw new Error(JSON.stringify(validation.value.issues.slice(0, 5)));
const ruleSet = validation.value.value;
console.log(`rule set: ${RULES} rules x ${RECIPIENTS_PER_RULE} recipients, validated in ${validation.ms.toFixed(1)} ms`);
const settings = { ruleSet, filters: null, identities: identitiesOfRules(ruleSet.rules), tls: false };

// Warm up the JIT and the page cache so that the first measured pass is not the slow one.
for await (const outcome of replayFiles((await files("small")).slice(0, 2000), settings)) void outcome;

const small = await measure("small", settings);
const large = await measure("large", settings);
console.log(
  `\nevaluation cost per message: ${small.perMessageEvaluateUs.toFixed(1)} us at 10 KB, ${large.perMessageEvaluateUs.toFixed(1)} us at 1 MB`,
);
