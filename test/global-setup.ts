import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

/**
 * CLI tests run the built `receiptd` binary as users do, so the build must match the sources.
 * tsc emits even when it finds type errors; those fail `npm run typecheck`, which `npm test`
 * runs first, so here they are only reported and the tests still run on what was emitted.
 */
export default function buildOnce(): void {
  const root = fileURLToPath(new URL("..", import.meta.url));
  const build = spawnSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.build.json"], {
    cwd: root,
    encoding: "utf8",
  });
  if (build.status !== 0) process.stderr.write(`build reported errors (see npm run typecheck):\n${build.stdout}${build.stderr}`);
}
