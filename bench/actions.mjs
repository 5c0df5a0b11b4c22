// Action back-end throughput: S3 PutObject through the AWS back end against a local
// S3-compatible server (s3rver, in its own process so that it does not share our event
// loop), and the local back end on disk. Each figure is printed beside a baseline measured
// in the same run: the plain SDK call with the body in memory for S3, and a bare
// write-and-fsync for the local disk, since only same-run ratios mean anything on a shared
// machine. Run with `npm run bench:actions`.
import { fork } from "node:child_process";
import { mkdtemp, rm, open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { awsBackend } from "../dist/actions/aws/index.js";
import { localBackend } from "../dist/actions/local/index.js";

const CONCURRENCY = 16;
const SIZES = [
  { label: "10 KB", bytes: 10 * 1024, count: Number(process.env.BENCH_SMALL_OBJECTS ?? 2000) },
  { label: "1 MB", bytes: 1024 * 1024, count: Number(process.env.BENCH_LARGE_OBJECTS ?? 200) },
];
const CREDENTIALS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };
const noTransports = {
  sendDsn: () => Promise.reject(new Error("not measured")),
  deliverToMailbox: () => Promise.reject(new Error("not measured")),
};

/** s3rver in a child process; resolves with its endpoint. */
async function startS3rver(directory) {
  const child = fork(fileURLToPath(new URL("./s3rver-child.mjs", import.meta.url)), [directory], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const port = await new Promise((resolve, reject) => {
    child.once("message", resolve);
    child.once("exit", (code) => reject(new Error(`s3rver exited with ${code}`)));
  });
  return { endpoint: `http://127.0.0.1:${port}`, stop: () => child.kill() };
}

async function* once(buffer) {
  yield buffer;
}

async function pool(count, task) {
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < count) await task(next++);
    }),
  );
  return performance.now() - start;
}

function figures(count, bytes, ms) {
  const perSecond = (count / ms) * 1000;
  return { perSecond, text: `${Math.round(perSecond).toLocaleString("en-US").padStart(7)} obj/s ${((perSecond * bytes) / 2 ** 20).toFixed(1).padStart(7)} MiB/s` };
}

function row(name, ours, baseline) {
  console.log(`  ${name.padEnd(34)} ${ours.text}   baseline ${baseline.text}   ratio ${(ours.perSecond / baseline.perSecond).toFixed(2)}`);
}

const scratch = await mkdtemp(join(tmpdir(), "receiptd-bench-actions-"));
const s3rver = await startS3rver(join(scratch, "s3rver"));
try {
  process.env.AWS_ACCESS_KEY_ID = CREDENTIALS.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = CREDENTIALS.secretAccessKey;
  const aws = awsBackend({ region: "us-east-1", s3: { endpoint: s3rver.endpoint, forcePathStyle: true }, ...noTransports });
  const plain = new S3Client({ region: "us-east-1", endpoint: s3rver.endpoint, forcePathStyle: true, credentials: CREDENTIALS, requestChecksumCalculation: "WHEN_REQUIRED" });
  const local = localBackend({ dataDir: join(scratch, "local"), ...noTransports });

  // One unmeasured round of each, so that neither side pays for connection set-up and JIT.
  const warm = Buffer.alloc(1024, "w");
  await pool(200, (i) => plain.send(new PutObjectCommand({ Bucket: "bench", Key: `warm/plain/${i}`, Body: warm })));
  await pool(200, (i) => aws.putObject({ bucket: "bench", key: `warm/ours/${i}`, body: once(warm), contentLength: warm.length }));

  console.log(`S3 PutObject against s3rver (separate process), ${CONCURRENCY} in flight:`);
  for (const { label, bytes, count } of SIZES) {
    const body = Buffer.alloc(bytes, "m");
    const baseline = figures(count, bytes, await pool(count, (i) => plain.send(new PutObjectCommand({ Bucket: "bench", Key: `plain/${label}/${i}`, Body: body }))));
    const ours = figures(count, bytes, await pool(count, (i) => aws.putObject({ bucket: "bench", key: `ours/${label}/${i}`, body: once(body), contentLength: bytes })));
    row(`${label}: AWS back end (streamed)`, ours, baseline);
  }

  console.log(`\nLocal back end on disk (every object fsync'd), ${CONCURRENCY} in flight:`);
  for (const { label, bytes, count } of SIZES) {
    const body = Buffer.alloc(bytes, "m");
    const baseline = figures(
      count,
      bytes,
      await pool(count, async (i) => {
        const file = await open(join(scratch, `plain-${label.replace(" ", "")}-${i}`), "w");
        await file.write(body);
        await file.sync();
        await file.close();
      }),
    );
    const ours = figures(count, bytes, await pool(count, (i) => local.putObject({ bucket: "bench", key: `${label.replace(" ", "")}/${i}`, body: once(body), contentLength: bytes })));
    row(`${label}: local S3 (atomic, durable)`, ours, baseline);
  }
  const notification = JSON.stringify({ notificationType: "Received", padding: "x".repeat(3000) });
  const count = SIZES[0].count;
  const published = figures(count, notification.length, await pool(count, () => local.publish({ topicArn: "arn:aws:sns:us-east-1:123456789012:bench", subject: "s", message: notification })));
  console.log(`  ${"SNS notification (one topic file)".padEnd(34)} ${published.text}`);
  plain.destroy();
} finally {
  s3rver.stop();
  await rm(scratch, { recursive: true, force: true });
}
