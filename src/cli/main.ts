#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { runDiff } from "./diff.js";
import { runMessages } from "./messages.js";
import { runReplay } from "./replay.js";
import { runServe } from "./serve.js";
import { runState } from "./state.js";
import { runValidate } from "./validate.js";
import { UsageError } from "./usage.js";

const HELP = `receiptd: SES-style inbound mail engine

Usage:
  receiptd serve [--config <file>]                            run the MX daemon
  receiptd replay <file-or-dir>... --rules <file> [options]   push .eml files through a rule set
  receiptd diff <old-rules> <new-rules> <file-or-dir>...     what a rule change does to real mail
  receiptd validate <rules.json> [--filters <file>]           check a rule set (and filters)
  receiptd messages list|show|export|requeue [options]        find a message in the spool, requeue dead letters
  receiptd state export|import|audit [options]                the SES API's state: files, history
  receiptd help [command]
  receiptd --version                                          print the version

Run "receiptd help replay" for the replay options.
`;

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  serve: runServe,
  replay: runReplay,
  diff: runDiff,
  validate: runValidate,
  messages: runMessages,
  state: runState,
};

/** Read when asked, from the package.json installed beside dist/, so it cannot go stale. */
function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
  return manifest.version;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  if (command === "--version" || command === "-v") {
    process.stdout.write(`${packageVersion()}\n`);
    return 0;
  }
  if (command === undefined || command === "help" || command === "--help" || command === "-h") {
    const topic = args[0];
    if (topic && COMMANDS[topic]) return COMMANDS[topic](["--help"]);
    process.stdout.write(HELP);
    return command === undefined ? 2 : 0;
  }
  const run = COMMANDS[command];
  if (!run) throw new UsageError(`unknown command "${command}"`);
  return run(args);
}

// A reader that went away (`receiptd replay ... | head`) is not a failure: end quietly, as
// coreutils do on SIGPIPE, instead of dying of an unhandled EPIPE with a stack trace. The
// daemon is the exception: a log reader that goes away must not stop it holding accepted
// mail, so it keeps running and its lines are dropped.
const serving = process.argv[2] === "serve";
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code !== "EPIPE" && error.code !== "ERR_STREAM_DESTROYED") throw error;
    if (!serving) process.exit(0);
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof UsageError) {
      process.stderr.write(`receiptd: ${error.message}\n${error.help ?? 'Run "receiptd help" for usage.'}\n`);
      process.exitCode = 2;
      return;
    }
    process.stderr.write(`receiptd: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
