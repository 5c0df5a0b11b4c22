// The Postfix peer: a private instance (its own config_directory, queue_directory and
// data_directory in a temporary directory; the system instance, if any, is not touched)
// that accepts mail for the bench domain into its durable queue and delivers it to the
// discard transport. Postfix fsyncs each queue file before it answers 250, as we do.
import { mkdirSync, readFileSync, readdirSync, statSync, openSync, readSync, closeSync, writeFileSync, chmodSync } from "node:fs";
import { join } from "node:path";
import { alive, lastLines, onCleanup, pollUntil, progress, removeOnExit, runSync, which } from "./util.mjs";
import { smtpAnswers } from "./probe.mjs";

const DEBCONF = "postfix postfix/main_mailer_type select No configuration\n";

/**
 * The path of smtp-source, installing Debian's postfix package when it is missing (root
 * only). "No configuration" keeps the package from setting up a system mail server.
 */
export function ensureSmtpSource() {
  const found = which("smtp-source");
  if (found) return found;
  if (process.getuid?.() !== 0) throw new Error("smtp-source is missing and installing the postfix package needs root (apt-get install postfix)");
  if (!which("apt-get")) throw new Error("smtp-source is missing and there is no apt-get to install postfix with");
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  progress("smtp-source not found: installing the postfix package (apt-get)");
  if (which("debconf-set-selections")) runSync("debconf-set-selections", [], { env, input: DEBCONF });
  const install = () => runSync("apt-get", ["install", "-y", "--no-install-recommends", "postfix"], { env, timeoutMs: 900_000 });
  let result = install();
  if (result.code !== 0) {
    // A fresh machine or container often has no package lists yet.
    progress("apt-get install failed; running apt-get update and trying again");
    runSync("apt-get", ["update"], { env, timeoutMs: 900_000 });
    result = install();
  }
  const path = which("smtp-source");
  if (result.code !== 0 || !path) throw new Error(`cannot install postfix:\n${lastLines(result.output)}`);
  return path;
}

function mainCf(dir) {
  return `# Private Postfix instance for receiptd's SMTP bench (generated; removed afterwards).
compatibility_level = 3.6
queue_directory = ${dir}/queue
data_directory = ${dir}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = bench-postfix.localdomain
mydomain = localdomain
myorigin = $myhostname
# The bench domain is final destination; everything is then thrown away by discard(8),
# after the message went through the durable queue.
mydestination = bench.example
local_recipient_maps =
alias_maps =
alias_database =
local_transport = discard:bench
default_transport = discard:bench
relay_transport = discard:bench
# Only the bench domain is accepted, as receiptd accepts only its identities.
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions = reject_unauth_destination
# No reverse DNS and no per-client limits, as in the receiptd configuration.
smtpd_peername_lookup = no
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
smtpd_client_new_tls_session_rate_limit = 0
message_size_limit = 52428800
biff = no
append_dot_mydomain = no
# Log to a file through postlogd(8), so that no syslog daemon is needed.
maillog_file = ${dir}/maillog
maillog_file_prefixes = ${dir}
# The SMTP port is in master.cf.
`;
}

function masterCf(port) {
  // Only the services that receiving and discarding need; no chroot, so that nothing has
  // to be copied into the queue directory.
  return `127.0.0.1:${port} inet n - n - - smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`;
}

/** Number of queue files not yet delivered (incoming, active, deferred, hold), walking hashed subdirectories. */
function queuedFiles(queueDir) {
  let count = 0;
  const walk = (dir) => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      if (entry.isDirectory()) walk(join(dir, entry.name));
      else count++;
    }
  };
  for (const name of ["incoming", "active", "deferred", "hold", "maildrop"]) walk(join(queueDir, name));
  return count;
}

/** Starts the instance on `port` under `scratch`; returns the server object the bench drives. */
export async function startPostfix(scratch, port) {
  const postfix = which("postfix");
  if (!postfix) throw new Error("the postfix command is missing");
  const dir = join(scratch, "postfix");
  const conf = join(dir, "etc");
  mkdirSync(conf, { recursive: true });
  // Postfix's daemons run as the postfix user and must be able to reach the queue.
  chmodSync(scratch, 0o755);
  chmodSync(dir, 0o755);
  mkdirSync(join(dir, "queue"), { mode: 0o755 });
  writeFileSync(join(conf, "main.cf"), mainCf(dir));
  writeFileSync(join(conf, "master.cf"), masterCf(port));
  writeFileSync(join(dir, "maillog"), "");
  const remove = removeOnExit(dir);
  // From here on a crash of the bench must also stop the instance ("abort" does not wait).
  const forgetAbort = onCleanup(() => runSync(postfix, ["-c", conf, "abort"], { timeoutMs: 30_000 }));

  let version;
  try {
    // "check" creates the queue's subdirectories with the right owners ("set-permissions"
    // would also fix existing ones); "start" then returns once the master daemon runs.
    const maillog = () => lastLines(readFileSync(join(dir, "maillog"), "utf8"));
    const check = runSync(postfix, ["-c", conf, "check"], { timeoutMs: 60_000 });
    if (check.code !== 0) throw new Error(`postfix check failed:\n${lastLines(check.output)}\n${maillog()}`);
    const start = runSync(postfix, ["-c", conf, "start"], { timeoutMs: 60_000 });
    if (start.code !== 0) throw new Error(`postfix start failed:\n${lastLines(start.output)}\n${maillog()}`);
    if (!(await pollUntil(() => smtpAnswers(port), { timeoutMs: 30_000, intervalMs: 200 }))) {
      throw new Error(`Postfix started but nothing answers on 127.0.0.1:${port}:\n${maillog()}`);
    }
    version = runSync(which("postconf") ?? "postconf", ["-c", conf, "-h", "mail_version"]).output.trim();
  } catch (error) {
    runSync(postfix, ["-c", conf, "abort"], { timeoutMs: 30_000 });
    forgetAbort();
    remove();
    throw error;
  }

  // Delivered messages are counted in the log ("status=sent" from discard), read incrementally.
  let logOffset = 0;
  let sent = 0;
  const readLog = () => {
    const fd = openSync(join(dir, "maillog"), "r");
    try {
      const size = statSync(join(dir, "maillog")).size;
      if (size <= logOffset) return sent;
      const buffer = Buffer.alloc(size - logOffset);
      readSync(fd, buffer, 0, buffer.length, logOffset);
      // Only whole lines; a partial last line is read again next time.
      const text = buffer.toString("latin1");
      const end = text.lastIndexOf("\n") + 1;
      logOffset += Buffer.byteLength(text.slice(0, end), "latin1");
      sent += text.slice(0, end).split("status=sent").length - 1;
      return sent;
    } finally {
      closeSync(fd);
    }
  };

  return {
    name: "postfix",
    label: `Postfix ${version}`,
    port,
    async beginRun() {},
    /** Messages that went through the queue so far; the log lags a little behind the queue. */
    async accepted(expectedAtLeast) {
      const target = expectedAtLeast ?? 0;
      let last = -1;
      let stableSince = Date.now();
      const count = await pollUntil(
        () => {
          const now = readLog();
          if (now >= target) return { now };
          if (now !== last) {
            last = now;
            stableSince = Date.now();
          }
          return Date.now() - stableSince > 3000 ? { now } : null;
        },
        { timeoutMs: 30_000, intervalMs: 100 },
      );
      return count?.now ?? readLog();
    },
    /** Waits until the queue is empty: qmgr and discard run behind smtpd. */
    async drain(timeoutMs) {
      return Boolean(await pollUntil(() => queuedFiles(join(dir, "queue")) === 0, { timeoutMs, intervalMs: 100 }));
    },
    async endRun() {},
    async stop() {
      const pidFile = join(dir, "queue", "pid", "master.pid");
      let pid = NaN;
      try {
        pid = Number(readFileSync(pidFile, "utf8").trim());
      } catch {
        // not running
      }
      runSync(postfix, ["-c", conf, "stop"], { timeoutMs: 60_000 });
      if (Number.isInteger(pid)) await pollUntil(() => !alive(pid), { timeoutMs: 15_000, intervalMs: 100 });
      forgetAbort();
      remove();
    },
  };
}
