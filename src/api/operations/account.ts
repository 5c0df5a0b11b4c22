import type { Operation } from "../operation.js";
import { operation, read, write } from "./common.js";

/** The account's sending pause (seed 2017-11-15); while paused no DSN leaves (docs/behaviour.md §12). */
export const ACCOUNT_OPERATIONS: readonly Operation[] = [
  operation("GetAccountSendingEnabled", { writes: false }, async (_params, context) =>
    read(context, (state) => ({ Enabled: state.sendingEnabled })),
  ),
  // No output shape (reference §1.3). `Enabled` absent: SES's model defaults it to false.
  operation("UpdateAccountSendingEnabled", { writes: true, hasResult: false }, async (params, context) => {
    const enabled = params.boolean("Enabled") ?? false;
    await write(context, "UpdateAccountSendingEnabled", { Enabled: String(enabled) }, (state) =>
      state.sendingEnabled === enabled ? { state } : { state: Object.freeze({ ...state, sendingEnabled: enabled }) },
    );
    return undefined;
  }),
];
