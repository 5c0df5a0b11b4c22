import { constants } from "node:fs";
import { open, stat } from "node:fs/promises";
import type { IpFilter, RuleSet } from "../rules/model.js";
import { RuleSetValidationError, parseFiltersText, parseRuleSetText } from "../rules/parse.js";

/**
 * The text of a rule set or filters file, for every reader (the daemon's reloads, validate,
 * replay, the testing library). Only a regular file (a symlink to one is fine: ConfigMaps are
 * symlinks): reading a FIFO or a device would block a threadpool thread for good, and with it
 * every later reload and the shutdown. The stat refuses early; O_NONBLOCK keeps open() from
 * waiting for a FIFO's writer should one be swapped in meanwhile, and fstat checks what was
 * opened. Throws RuleSetValidationError naming the file.
 */
export async function readRuleFile(path: string): Promise<string> {
  try {
    if (!(await stat(path)).isFile()) throw new Error("not a regular file");
    const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      if (!(await handle.stat()).isFile()) throw new Error("not a regular file");
      return await handle.readFile("utf8");
    } finally {
      await handle.close();
    }
  } catch (error) {
    const issue = { path: "", message: `cannot read the file: ${(error as Error).message}` };
    throw new RuleSetValidationError(path, [issue], { cause: error });
  }
}

export async function loadRuleSetFile(path: string): Promise<RuleSet> {
  return parseRuleSetText(await readRuleFile(path), path);
}

export async function loadFiltersFile(path: string): Promise<IpFilter[]> {
  return parseFiltersText(await readRuleFile(path), path);
}
