import { parseArgs } from "node:util";
import type { ParseArgsConfig } from "node:util";

/** Bad command-line usage: exit code 2 with the command's help. */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly help?: string,
  ) {
    super(message);
  }
}

/** `parseArgs`, with its errors turned into usage errors that carry the command's help. */
type CommandLineConfig<T> = { args: string[]; options: T; allowPositionals: true; strict: true };

export function parseCommandLine<T extends NonNullable<ParseArgsConfig["options"]>>(
  args: string[],
  options: T,
  help: string,
): ReturnType<typeof parseArgs<CommandLineConfig<T>>> {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error), help);
  }
}
