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

const DURATION = /^(\d+)(s|m|h|d)$/;
const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** `--since`-style options: an ISO 8601 time, or a duration before now (90s, 30m, 2h, 7d); milliseconds since the epoch. */
export function parseTimeOption(option: string, text: string, help: string): number {
  const duration = DURATION.exec(text);
  if (duration) return Date.now() - Number(duration[1]) * UNIT_MS[duration[2] as keyof typeof UNIT_MS];
  const time = /^\d{4}-\d{2}-\d{2}/.test(text) ? Date.parse(text) : Number.NaN;
  if (Number.isNaN(time)) throw new UsageError(`--${option} "${text}": expected an ISO 8601 time or a duration such as 30m, 2h or 7d`, help);
  return time;
}
