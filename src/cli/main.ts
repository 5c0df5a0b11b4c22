#!/usr/bin/env node
import { runReplay } from "./replay.js";
import { runServe } from "./serve.js";
import { runValidate } from "./validate.js";
import { UsageError } from "./usage.js";

const HELP = `receiptd: SES-style inbound mail engine

Usage:
  receiptd serve [--config <file>]                            run the MX daemon
  receiptd replay <file-or-dir>... --rules <file> [options]   push .eml files through a rule set
  receiptd validate <rules.json> [--filters <file>]           check a rule set (and filters)
  receiptd help [command]

Run "receiptd help replay" for the replay options.
`;

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  serve: runServe,
  replay: runReplay,
  validate: runValidate,
};

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
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
