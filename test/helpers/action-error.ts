import { expect } from "vitest";
import { ActionError } from "../../src/actions/backend.js";

/** The ActionError a back-end call rejects with; fails the test if it resolves or throws anything else. */
export async function actionFailure(promise: Promise<unknown>): Promise<ActionError> {
  const error = await promise.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(ActionError);
  return error as ActionError;
}
