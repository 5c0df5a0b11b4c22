import type { AwsBackendOptions } from "../../src/actions/aws/index.js";

/** The AWS tests do not send DSNs or deliver to mailboxes; these fail loudly if they are reached. */
export const noTransports: Pick<AwsBackendOptions, "sendDsn" | "deliverToMailbox"> = {
  sendDsn: () => Promise.reject(new Error("sendDsn is not part of this test")),
  deliverToMailbox: () => Promise.reject(new Error("deliverToMailbox is not part of this test")),
};

/** Static dummy credentials, so that the SDK never looks for real ones (or asks IMDS). */
export const DUMMY_CREDENTIALS = { accessKeyId: "AKIDRECEIPTDTEST", secretAccessKey: "receiptd-test-secret" };
