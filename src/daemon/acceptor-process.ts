// An SMTP acceptor process (see acceptors.ts): started by the daemon with cluster.fork, never by hand.
import { loggerFromEnvironment } from "../ops/log.js";
import { mirrorPolicy } from "../ops/reload.js";
import { SpoolWriter } from "../spool/spool-writer.js";
import { startIntake } from "./intake.js";
import type { Intake } from "./intake.js";
import type { AcceptorReport, FromAcceptor, ToAcceptor } from "./acceptors.js";
import { pooledRandomBytes } from "./random.js";

if (!process.send) {
  process.stderr.write("receiptd: the acceptor process is started by `receiptd serve`, not by hand\n");
  process.exit(2);
}

const logger = loggerFromEnvironment().child({ acceptor: Number(process.env.RECEIPTD_ACCEPTOR) });

function send(message: FromAcceptor, callback?: () => void): void {
  if (!process.connected) return callback?.();
  process.send!(message, undefined, {}, () => callback?.());
}

// The daemon's process is gone (killed, crashed): no further 250 may go out, since a restarted
// daemon recovers the spool as if nobody were writing to it. Open sessions die with us; their
// clients try again.
process.on("disconnect", () => process.exit(1));
// SIGHUP reloads in the daemon's process, which passes the result on; SIGTERM and SIGINT (a
// terminal's ^C reaches the whole process group) stop us as the daemon's "stop" would.
process.on("SIGHUP", () => undefined);
process.on("SIGTERM", () => void stop(graceMs));
process.on("SIGINT", () => void stop(graceMs));

let graceMs = 0;
let mirror: ReturnType<typeof mirrorPolicy> | null = null;
let intake: Intake | null = null;
let spool: SpoolWriter | null = null;
let stopping: Promise<void> | null = null;
let reports: AcceptorReport[] = [];
let flushScheduled = false;

function flush(callback?: () => void): void {
  flushScheduled = false;
  const batch = reports;
  reports = [];
  send({ type: "reports", reports: batch, accepting: intake?.accepting() ?? 0 }, callback);
}

function report(item: AcceptorReport): void {
  reports.push(item);
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flush);
  }
}

function stop(grace: number): Promise<void> {
  stopping ??= (async () => {
    try {
      await intake?.close(grace);
      await spool?.close();
    } catch (error) {
      logger.error("smtp.acceptor_stop_failed", { error });
    }
    flush(() => process.exit(0));
  })();
  return stopping;
}

process.on("message", (message: ToAcceptor) => {
  switch (message.type) {
    case "start":
      void start(message);
      return;
    case "policy":
      try {
        // The daemon validated these texts already; a failure here is a bug, and the old policy stays.
        if (mirror?.update(message.policy)) logger.debug("config.applied", { generation: message.policy.generation });
      } catch (error) {
        logger.error("config.mirror_failed", { generation: message.policy.generation, error });
      }
      return;
    case "stop":
      void stop(message.graceMs);
      return;
  }
});

async function start(message: Extract<ToAcceptor, { type: "start" }>): Promise<void> {
  const { config } = message;
  graceMs = config.serve.shutdownGraceMs;
  try {
    mirror = mirrorPolicy(config.serve.identities, message.policy);
    spool = SpoolWriter.forAcceptor({ dir: config.serve.spool.dir });
    intake = await startIntake(config, {
      policy: mirror,
      spool,
      clock: () => new Date(),
      random: pooledRandomBytes,
      onEvent: (event) => report({ kind: "smtp", event }),
      onAccepted: (seconds) => report({ kind: "accepted", seconds }),
      onAuthenticated: (authenticated) => report({ kind: "authenticated", report: authenticated }),
    });
  } catch (error) {
    send({ type: "failed", error: error instanceof Error ? error.message : String(error) }, () => process.exit(1));
    return;
  }
  if (stopping) return;
  send({ type: "listening", addresses: intake.listener.addresses() });
}

send({ type: "ready" });
