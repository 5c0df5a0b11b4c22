import type { Operation } from "../operation.js";
import { IDENTITY_OPERATIONS } from "./identities.js";
import { ACCOUNT_OPERATIONS } from "./account.js";
import { BOUNCE_OPERATIONS } from "./bounce.js";
import { POLICY_OPERATIONS } from "./policies.js";
import { receiptOperations } from "./receipt.js";

/** Every SES operation the API answers. */
export const OPERATIONS: readonly Operation[] = [...receiptOperations(), ...IDENTITY_OPERATIONS, ...POLICY_OPERATIONS, ...ACCOUNT_OPERATIONS, ...BOUNCE_OPERATIONS];
