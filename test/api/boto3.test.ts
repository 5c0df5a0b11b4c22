import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApiDaemon } from "../helpers/api-daemon.js";
import type { ApiDaemon } from "../helpers/api-daemon.js";

// Debian's python3-boto3, which .ci/run installs; a developer's /usr/bin/python3 may lack it.
const PYTHON = "/usr/bin/python3";
const hasBoto3 = existsSync(PYTHON) && (await promisify(execFile)(PYTHON, ["-c", "import boto3"]).then(() => true, () => false));
const run = hasBoto3 || process.env.CI === "true" ? describe : describe.skip;
const SCRIPT = fileURLToPath(new URL("../fixtures/api/boto3_errors.py", import.meta.url));

let api: ApiDaemon;
beforeAll(async () => {
  if (hasBoto3 || process.env.CI === "true") api = await startApiDaemon();
});
afterAll(async () => api?.stop());

run("boto3 against receiptd serve", () => {
  it("raises SES's typed exceptions for every error path, and the state stays as it was", async () => {
    const { stdout } = await promisify(execFile)(PYTHON, [SCRIPT, api.endpoint], { env: { PATH: "/usr/bin:/bin", AWS_CONFIG_FILE: "/dev/null", AWS_SHARED_CREDENTIALS_FILE: "/dev/null" } });
    expect(JSON.parse(stdout)).toEqual({
      RuleSetDoesNotExist: "ok:RuleSetDoesNotExist",
      AlreadyExists: "ok:AlreadyExists",
      CannotDelete: "ok:CannotDelete",
      RuleDoesNotExist: "ok:RuleDoesNotExist",
      RuleDoesNotExistAfter: "ok:RuleDoesNotExist",
      LimitExceeded: "ok:LimitExceeded",
      InvalidPolicy: "ok:InvalidPolicy",
      ValidationError: "ok:ValidationError",
      InvalidParameterValue: "ok:InvalidParameterValue",
      InvalidClientTokenId: "ok:InvalidClientTokenId",
      SignatureDoesNotMatch: "ok:SignatureDoesNotMatch",
      MessageRejected: "ok:MessageRejected",
      AccountSendingPausedException: "ok:AccountSendingPausedException",
      unchanged: true,
      rule_sets: ["main"],
    });
  }, 60_000);
});
