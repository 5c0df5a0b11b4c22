import { ReceiptApiError } from "../../rules/store.js";
import type { ChangeOrigin, ScopeState } from "../../store/store.js";
import { SesError } from "../operation.js";
import type { Operation, OperationContext, Params, XmlStruct } from "../operation.js";

/** A pure state machine's error as SES puts it on the wire: what it is about in `Name`, as clients read it. */
export function sesErrorOf(error: unknown): unknown {
  if (!(error instanceof ReceiptApiError)) return error;
  return new SesError(error.code, error.message, 400, error.subject === undefined ? {} : { Name: error.subject });
}

export function originOf(context: OperationContext, operation: string, target: Record<string, string | undefined>): ChangeOrigin {
  const named = Object.fromEntries(Object.entries(target).filter((entry): entry is [string, string] => entry[1] !== undefined));
  return {
    via: "api",
    operation,
    accessKeyId: context.caller.accessKeyId,
    requestId: context.requestId,
    address: context.caller.address,
    target: named,
  };
}

/**
 * A write: `change` gets the newest state of the caller's scope and returns the next one (the
 * same object when nothing changes, so nothing is written). The store bumps the revision.
 */
export async function write<T = undefined>(
  context: OperationContext,
  operation: string,
  target: Record<string, string | undefined>,
  change: (state: ScopeState) => { state: ScopeState; result?: T },
): Promise<T | undefined> {
  try {
    return await context.store.update(context.scope, originOf(context, operation, target), (state) => {
      const next = change(state);
      return { state: next.state, result: next.result };
    });
  } catch (error) {
    throw sesErrorOf(error);
  }
}

export async function read<T>(context: OperationContext, view: (state: ScopeState) => T): Promise<T> {
  const state = await context.store.read(context.scope);
  try {
    return view(state);
  } catch (error) {
    throw sesErrorOf(error);
  }
}

/** An operation from its parts; `writes` marks the calls that change state. */
export function operation(
  name: string,
  options: { writes: boolean; hasResult?: boolean },
  run: (params: Params, context: OperationContext) => Promise<XmlStruct | undefined>,
): Operation {
  return { name, hasResult: options.hasResult ?? true, writes: options.writes, run };
}

const NAME_PATTERN = /^[a-zA-Z0-9_.-]+$/;

/**
 * SES checks names in two layers (reference §3.1): characters outside the pattern are a Smithy
 * ValidationError; a name too long or not starting and ending with a letter or digit is the
 * service's InvalidParameterValue.
 */
export function checkName(value: string, parameter: string): void {
  const member = parameter.charAt(0).toLowerCase() + parameter.slice(1);
  if (!NAME_PATTERN.test(value)) {
    throw new SesError(
      "ValidationError",
      `1 validation error detected: Value at '${member}' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9_.-]+$`,
    );
  }
  if (value.length > 64 || !/^[a-zA-Z0-9]/.test(value) || !/[a-zA-Z0-9]$/.test(value)) {
    throw new SesError("InvalidParameterValue", `Not a valid ${member}: ${value}`);
  }
}

export function requiredName(params: Params, member: string): string {
  const value = params.requiredString(member);
  checkName(value, member);
  return value;
}

/** An optional name where an empty value means absent, as Terraform and AWS's examples send `After=""`. */
export function optionalName(params: Params, member: string): string | undefined {
  const value = params.string(member);
  if (value === undefined || value === "") return undefined;
  checkName(value, member);
  return value;
}

/** A member of an enum, checked as SES's Smithy layer does (ValidationError naming the member). */
export function enumValue<T extends string>(value: string, member: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new SesError(
      "ValidationError",
      `1 validation error detected: Value '${value}' at '${member}' failed to satisfy constraint: Member must satisfy enum value set: [${allowed.join(", ")}]`,
    );
  }
  return value as T;
}
