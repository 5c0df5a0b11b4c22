import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

/** CLI tests run the built `receiptd` binary as users do, so the build must match the sources. */
export default function buildOnce(): void {
  const root = fileURLToPath(new URL("..", import.meta.url));
  execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.build.json"], { cwd: root, stdio: "inherit" });
}
