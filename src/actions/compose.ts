import { join } from "node:path";
import { adminPublicUrl } from "../config/config.js";
import type { ReceiptdConfig } from "../config/config.js";
import type { ActionExecutor } from "../rules/executor.js";
import { awsBackend } from "./aws/index.js";
import type { ActionBackend } from "./backend.js";
import { localBackend } from "./local/index.js";
import type { BackgroundFailure, LocalSns } from "./local/index.js";
import type { ReceivedMessage } from "./message.js";
import { sesExecutor } from "./ses-executor.js";
import { directoryDsnSender, smtpDsnSender } from "./transports/dsn.js";
import { smtpMailboxDelivery } from "./transports/mailbox.js";

/**
 * One back end made of the configured choice for each action type. Topic notifications go
 * where the SNS choice says, whichever action publishes them. `localSns` is the local SNS,
 * for the admin port to serve its certificate and unsubscribe links; its URLs point at the
 * configured admin address unless `snsPublicUrl` tells the bound one.
 */
export function backendFromConfig(
  config: ReceiptdConfig,
  options: { onBackgroundFailure?: (failure: BackgroundFailure) => void; snsPublicUrl?: () => string | null } = {},
): ActionBackend & { localSns: LocalSns } {
  const { backends } = config;
  const sendDsn = backends.Bounce === "relay" ? smtpDsnSender(config.bounce.relay!) : directoryDsnSender(join(config.dataDir, "outbox"));
  const local = localBackend({
    dataDir: config.dataDir,
    snsHttpSubscriptions: config.local.snsHttpSubscriptions,
    snsSignatureVersion: config.local.snsSignatureVersion,
    snsPublicUrl: options.snsPublicUrl ?? (() => adminPublicUrl(config)),
    lambdaHandlers: config.local.lambdaHandlers,
    baseDir: config.baseDir,
    ...(config.local.requestResponseTimeoutMs === undefined ? {} : { requestResponseTimeoutMs: config.local.requestResponseTimeoutMs }),
    sendDsn,
    ...(options.onBackgroundFailure ? { onBackgroundFailure: options.onBackgroundFailure } : {}),
  });
  const deliverToMailbox =
    backends.WorkMail === "smtp" ? smtpMailboxDelivery(config.workmail.organizations) : local.deliverToMailbox;
  const usesAws = backends.S3 === "aws" || backends.SNS === "aws" || backends.Lambda === "aws";
  const aws = usesAws
    ? awsBackend({
        ...(config.aws.s3 ? { s3: config.aws.s3 } : {}),
        ...(config.aws.sns ? { sns: config.aws.sns } : {}),
        ...(config.aws.lambda ? { lambda: config.aws.lambda } : {}),
        ...(config.aws.region ? { region: config.aws.region } : {}),
        ...(config.aws.requestResponseTimeoutMs === undefined ? {} : { requestResponseTimeoutMs: config.aws.requestResponseTimeoutMs }),
        sendDsn,
        deliverToMailbox,
      })
    : null;
  const pick = (choice: "aws" | "local") => (choice === "aws" ? aws! : local);
  return {
    putObject: (request) => pick(backends.S3).putObject(request),
    publish: (request) => pick(backends.SNS).publish(request),
    invoke: (request) => pick(backends.Lambda).invoke(request),
    sendDsn,
    deliverToMailbox,
    targetExists: (target) => {
      const choice = target.service === "S3" ? backends.S3 : target.service === "SNS" ? backends.SNS : backends.Lambda;
      return pick(choice).targetExists(target);
    },
    localSns: local.sns,
  };
}

export function executorFromConfig(
  config: ReceiptdConfig,
  options: { clock?: () => Date } = {},
): ActionExecutor<ReceivedMessage> {
  return sesExecutor({
    backend: backendFromConfig(config),
    hostname: config.hostname,
    strict: config.strict,
    ...(options.clock ? { clock: options.clock } : {}),
  });
}
