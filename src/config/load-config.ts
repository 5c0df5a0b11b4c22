import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ConfigError } from "./config-error.js";
import { DEFAULTS } from "./defaults.js";
import { withDefaultDataDir } from "./environment.js";
import { parseConfig } from "./read-config.js";
import type { ReceiptdConfig } from "./schema.js";

/**
 * The embedded default, `rules/example.config.json` of the package: everything local, the
 * example rule set active with its Lambda handlers, SMTP and the admin port on DEFAULTS'
 * addresses, and the data directory ./data of the working directory.
 */
export async function defaultConfig(
  options: { env?: NodeJS.ProcessEnv; backend?: "local" | "aws" } = {},
): Promise<ReceiptdConfig> {
  return loadConfigFile(EXAMPLE_CONFIG, { ...options, env: withDefaultDataDir(options.env ?? process.env, resolve(DEFAULTS.dataDir)) });
}

const EXAMPLE_CONFIG = fileURLToPath(new URL("../../rules/example.config.json", import.meta.url));

/** The configuration in a JSON file; relative paths in it resolve against the file's directory. */
export async function loadConfigFile(
  path: string,
  options: { env?: NodeJS.ProcessEnv; backend?: "local" | "aws" } = {},
): Promise<ReceiptdConfig> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new ConfigError(path, [`cannot read the file: ${(error as Error).message}`]);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(path, [`invalid JSON: ${(error as Error).message}`]);
  }
  return parseConfig(doc, { source: path, baseDir: dirname(resolve(path)), ...options });
}
