// Replay throughput: how many messages per second `receiptd replay` pushes through a
// rule set of SES's maximum size, and where the time goes (reading, parsing, evaluating).
// Run with `npm run bench:replay`; figures vary between runs on a shared machine, so the
// ceiling (merely reading the same files) is measured in the same run for comparison.
import { mkdir, readFile, readdir, writeFile, stat } from "node:fs/promises";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { performance } from "node:perf_hooks";
import { parseRuleSet } from "../dist/rules/parse.js";
import { identitiesOfRules } from "../dist/rules/recipients.js";
import { parseMessageHead, readMessageHead } from "../dist/mail/headers.js";
import { replayFiles, replayFilesTwice, replayHead } from "../dist/replay/replay.js";
import { diffResults } from "../dist/replay/diff.js";
import { RECIPIENTS_PER_RULE, RULES, message, ruleSetJson } from "./corpus.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const corpusDir = join(here, ".corpus");
const SMALL = Number(process.env.BENCH_SMALL ?? 10_000);
const LARGE = Number(process.env.BENCH_LARGE ?? 50);
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

  // Read as replay reads: 16 files in flight.
  const fullRead = await timed(async () => {
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < n) await readFile(list[next++]);
      }),
    );
  });
  const heads = [];
  const headRead = await timed(async () => {
    for (const file of list) heads.push(await readMessageHead(file));
  });
  const parse = await timed(() => {
    for (const head of heads) parseMessageHead(head.headerBlock);
  });
  // Few large messages would make a noisy figure: evaluate them over several rounds.
  const rounds = Math.ceil(5000 / n);
  const evaluateOnly = await timed(async () => {
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < n; i++) await replayHead(list[i], heads[i], settings);
    }
  });
  evaluateOnly.ms /= rounds;
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
  console.log(`  ceiling: reading the whole files, 16 in flight  ${rate(n, fullRead.ms)}`);
  console.log(`  split, one message at a time: read ${pct(readMs)} (${rate(n, readMs)}), parse ${pct(parse.ms)} (${rate(n, parse.ms)}), evaluate ${pct(evaluateOnly.ms)} (${rate(n, evaluateOnly.ms)})`);
  return { perMessageEvaluateUs: (evaluateOnly.ms / n) * 1000 };
}

// `receiptd diff` as it runs: each file read once and replayed under both rule sets, then compared.
async function measureDiff(kind, settings) {
  const list = await files(kind);
  // A realistic edit: every tenth rule stores under a new prefix, so about a tenth of the mail changes.
  const moved = (rule) => ({
    ...rule,
    actions: rule.actions.map((action) => (action.type === "S3" ? { ...action, params: { ...action.params, ObjectKeyPrefix: "moved/" } } : action)),
  });
  const changedSet = { ...settings.ruleSet, rules: settings.ruleSet.rules.map((rule, i) => (i % 10 === 5 ? moved(rule) : rule)) };
  const oneReplay = await timed(async () => {
    for await (const outcome of replayFiles(list, settings)) void outcome;
  });
  let changed = 0;
  const diff = await timed(async () => {
    for await (const outcome of replayFilesTwice(list, settings, { ...settings, ruleSet: changedSet })) {
      if ("error" in outcome) throw new Error(`${outcome.file}: ${outcome.error}`);
      if (diffResults(outcome.before, outcome.after).length > 0) changed++;
    }
  });
  console.log(`\ndiff, ${kind}: ${list.length} messages, every tenth rule's S3 prefix changed (${changed} changed)`);
  console.log(`  diff end to end (16 files in flight)  ${rate(list.length, diff.ms)}, beside one replay  ${rate(list.length, oneReplay.ms)}`);
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
await measureDiff("small", settings);
console.log(
  `\nevaluation cost per message: ${small.perMessageEvaluateUs.toFixed(1)} us at 10 KB, ${large.perMessageEvaluateUs.toFixed(1)} us at 1 MB`,
);
