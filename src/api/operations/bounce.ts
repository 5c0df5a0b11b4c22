import { randomBytes } from "node:crypto";
import type { BouncedRecipientInfo, MessageDsn, RecipientDsnFields } from "@aws-sdk/client-ses";
import { DSN_DEFAULTS, DSN_STATUS, buildDsnReport, smtpDiagnostic } from "../../mail/dsn.js";
import type { BounceType, DsnField, DsnRecipient } from "../../mail/dsn.js";
import { newMessageId } from "../../mail/message-id.js";
import { SesError } from "../operation.js";
import type { BouncedMessage, Operation, OperationContext, Params } from "../operation.js";
import { enumValue, operation } from "./common.js";
import { canonicalIdentity, identitiesOf, verifiedIdentityOf } from "./identities.js";
import { identityArn, policiesAllow } from "./policies.js";

/** SES: "You can only use this operation on an email up to 24 hours after you receive it." */
const BOUNCE_WINDOW_MS = 24 * 60 * 60 * 1000;
const BOUNCE_TYPES = Object.keys(DSN_DEFAULTS) as BounceType[];
const DSN_ACTIONS = ["failed", "delayed", "delivered", "relayed", "expanded"] as const;
/** SES's ExtensionField: a name of 1 to 50 letters, digits and dashes; a value under 2048 characters, on one line. */
const FIELD_NAME = /^[A-Za-z0-9-]{1,50}$/;
const MAX_FIELD_VALUE = 2047;
const IDENTITY_ARN = /^arn:aws[a-z-]*:ses:([a-z0-9-]+):(\d{12}):identity\/(.+)$/;

/** The Diagnostic-Code text of a recipient given a BounceType and no Explanation. */
const BOUNCE_TEXT: Readonly<Record<BounceType, string>> = {
  DoesNotExist: "The mailbox does not exist.",
  MessageTooLarge: "The message is too large for the recipient.",
  ExceededQuota: "The recipient's mailbox is full.",
  ContentRejected: "The message content was rejected.",
  Undefined: "The message could not be delivered.",
  TemporaryFailure: "The message could not be delivered for now.",
};
const DEFAULT_EXPLANATION = "The message could not be delivered to one or more of its recipients.";

function oneLine(value: string, member: string): string {
  if (/[\r\n]/.test(value)) throw new SesError("InvalidParameterValue", `${member}: must not contain a line break`);
  return value;
}

function extensionFields(params: Params): DsnField[] | undefined {
  return params.structs("ExtensionFields")?.map((field) => {
    const name = field.requiredString("Name");
    const value = field.requiredString("Value");
    if (!FIELD_NAME.test(name)) {
      throw new SesError("InvalidParameterValue", `${field.path}.Name: 1 to 50 letters, digits and dashes: ${name}`);
    }
    if (value.length > MAX_FIELD_VALUE) throw new SesError("InvalidParameterValue", `${field.path}.Value: under 2048 characters`);
    return { name, value: oneLine(value, `${field.path}.Value`) };
  });
}

function status(params: Params): string {
  const value = params.requiredString("Status");
  if (!DSN_STATUS.test(value)) throw new SesError("InvalidParameterValue", `${params.path}.Status: expected x.y.z with x 2, 4 or 5: ${value}`);
  return value;
}

/** Members of an SDK shape that the request has given (the SDK's are all optional). */
type Given<T, K extends keyof T> = { [P in K]-?: NonNullable<T[P]> };

/** The request's members, each checked and named by its path, under SES's names (the SDK's shapes). */
interface BounceRequest {
  originalMessageId: string;
  bounceSender: string;
  bounceSenderArn?: string;
  explanation?: string;
  messageDsn?: Given<MessageDsn, "ReportingMta"> & { ArrivalDate?: Date; ExtensionFields?: DsnField[] };
  recipients: (Given<BouncedRecipientInfo, "Recipient"> & {
    BounceType?: BounceType;
    RecipientDsnFields?: Pick<RecipientDsnFields, "FinalRecipient" | "RemoteMta" | "DiagnosticCode" | "LastAttemptDate"> & {
      Action: DsnRecipient["action"];
      Status: string;
      ExtensionFields?: DsnField[];
    };
  })[];
}

function bounceRequest(params: Params): BounceRequest {
  const list = params.structs("BouncedRecipientInfoList");
  if (list === undefined) throw new SesError("MissingParameter", "The request must contain the parameter BouncedRecipientInfoList");
  if (list.length === 0) throw new SesError("InvalidParameterValue", "BouncedRecipientInfoList: at least one recipient is required");
  const dsn = params.struct("MessageDsn");
  const request: BounceRequest = {
    originalMessageId: params.requiredString("OriginalMessageId"),
    bounceSender: oneLine(params.requiredString("BounceSender"), "BounceSender"),
    recipients: list.map((info) => {
      const fields = info.struct("RecipientDsnFields");
      const type = info.string("BounceType");
      if (type === undefined && fields === undefined) {
        throw new SesError("InvalidParameterValue", `${info.path}: either BounceType or RecipientDsnFields is required`);
      }
      return {
        Recipient: oneLine(info.requiredString("Recipient"), `${info.path}.Recipient`),
        ...(type === undefined ? {} : { BounceType: enumValue(type, `${info.path}.BounceType`, BOUNCE_TYPES) }),
        ...(fields === undefined
          ? {}
          : {
              RecipientDsnFields: {
                Action: enumValue(fields.requiredString("Action"), `${fields.path}.Action`, DSN_ACTIONS),
                Status: status(fields),
                ...optional("FinalRecipient", fields),
                ...optional("RemoteMta", fields),
                ...optional("DiagnosticCode", fields),
                ...(fields.has("LastAttemptDate") ? { LastAttemptDate: fields.timestamp("LastAttemptDate") } : {}),
                ...(fields.has("ExtensionFields") ? { ExtensionFields: extensionFields(fields) } : {}),
              },
            }),
      };
    }),
  };
  const arn = params.string("BounceSenderArn");
  if (arn !== undefined) request.bounceSenderArn = arn;
  const explanation = params.string("Explanation");
  if (explanation !== undefined) request.explanation = explanation;
  if (dsn !== undefined) {
    request.messageDsn = {
      ReportingMta: oneLine(dsn.requiredString("ReportingMta"), `${dsn.path}.ReportingMta`),
      ...(dsn.has("ArrivalDate") ? { ArrivalDate: dsn.timestamp("ArrivalDate") } : {}),
      ...(dsn.has("ExtensionFields") ? { ExtensionFields: extensionFields(dsn) } : {}),
    };
  }
  return request;
}

function optional<K extends string>(member: K, params: Params): Partial<Record<K, string>> {
  const value = params.string(member);
  return value === undefined ? {} : ({ [member]: oneLine(value, `${params.path}.${member}`) } as Record<K, string>);
}

function rejected(message: string): SesError {
  return new SesError("MessageRejected", message);
}

function notVerified(address: string, region: string): SesError {
  return rejected(`Email address is not verified. The following identities failed the check in region ${region.toUpperCase()}: ${address}`);
}

/**
 * The BounceSender may be used by the caller (docs/behaviour.md §12): verified in the caller's
 * account, or, named by BounceSenderArn, verified in the ARN's account and allowed to the caller
 * by one of that identity's policies (`ses:SendBounce`).
 */
async function checkSender(request: BounceRequest, context: OperationContext): Promise<void> {
  const { scope, caller } = context;
  const sender = request.bounceSender;
  if (!/^[^@\s]+@[^@\s]+$/.test(sender)) throw new SesError("InvalidParameterValue", `BounceSender: not an email address: ${sender}`);
  if (request.bounceSenderArn === undefined) {
    if (verifiedIdentityOf(await context.store.read(scope), sender) === null) throw notVerified(sender, scope.region);
    return;
  }
  const arn = IDENTITY_ARN.exec(request.bounceSenderArn);
  if (!arn) throw new SesError("InvalidParameterValue", `BounceSenderArn: not an SES identity ARN: ${request.bounceSenderArn}`);
  const [, region, account, name] = arn as unknown as [string, string, string, string];
  const identity = canonicalIdentity(name);
  if (region !== scope.region) throw rejected(`BounceSenderArn: the identity is in ${region}, the request in ${scope.region}`);
  if (!identitiesOf(sender).includes(identity)) throw rejected(`BounceSender ${sender} is not the identity of BounceSenderArn (${identity})`);
  const owner = await context.store.read({ account, region });
  const record = owner.identities.get(identity);
  if (record?.verification.status !== "Success") throw notVerified(sender, region);
  const resource = identityArn(region, account, identity);
  if (account === caller.account) return;
  const allowed = policiesAllow(Object.values(record.policies), {
    account: caller.account,
    action: "ses:SendBounce",
    resource,
    fromAddress: sender,
  });
  if (!allowed) {
    throw new SesError("AccessDenied", `User \`arn:aws:iam::${caller.account}:root' is not authorized to perform \`ses:SendBounce' on resource \`${resource}'`, 403);
  }
}

async function findOriginal(request: BounceRequest, context: OperationContext): Promise<BouncedMessage> {
  const unknown = rejected(`Message ${request.originalMessageId} was not received in the last 24 hours, or does not exist`);
  const bounce = context.services.bounce;
  if (!bounce) throw new SesError("InternalFailure", "SendBounce is not available: no DSN transport is configured", 500);
  const message = await bounce.findMessage(context.scope, request.originalMessageId);
  if (!message || context.now.getTime() - message.receivedAt.getTime() > BOUNCE_WINDOW_MS) throw unknown;
  if (message.mailFrom === "") throw rejected(`Message ${request.originalMessageId} has the null sender: no DSN goes to it`);
  const originals = new Set(message.recipients.map(canonicalIdentity));
  for (const [i, info] of request.recipients.entries()) {
    const final = info.RecipientDsnFields?.FinalRecipient;
    if (!originals.has(canonicalIdentity(info.Recipient)) && (final === undefined || !originals.has(canonicalIdentity(final)))) {
      throw rejected(`BouncedRecipientInfoList.member.${i + 1}: ${info.Recipient} is not a recipient of message ${request.originalMessageId}`);
    }
  }
  return message;
}

function recipientBlock(info: BounceRequest["recipients"][number], explanation: string | undefined): DsnRecipient {
  const fields = info.RecipientDsnFields;
  if (fields) {
    return {
      recipient: fields.FinalRecipient ?? info.Recipient,
      action: fields.Action,
      status: fields.Status,
      ...(fields.RemoteMta === undefined ? {} : { remoteMta: fields.RemoteMta }),
      ...(fields.DiagnosticCode === undefined ? {} : { diagnosticCode: fields.DiagnosticCode }),
      ...(fields.LastAttemptDate === undefined ? {} : { lastAttemptDate: fields.LastAttemptDate }),
      ...(fields.ExtensionFields === undefined ? {} : { extensionFields: fields.ExtensionFields }),
    };
  }
  const type = info.BounceType as BounceType;
  const { smtpReplyCode, statusCode } = DSN_DEFAULTS[type];
  return {
    recipient: info.Recipient,
    action: smtpReplyCode.startsWith("4") ? "delayed" : "failed",
    status: statusCode,
    diagnosticCode: smtpDiagnostic(smtpReplyCode, statusCode, explanation ?? BOUNCE_TEXT[type]),
  };
}

export const BOUNCE_OPERATIONS: readonly Operation[] = [
  // SEMANTICS §7: a DSN for a message received in the last 24 hours, through the DSN transport.
  operation("SendBounce", { writes: false }, async (params, context) => {
    const request = bounceRequest(params);
    if (!(await context.store.read(context.scope)).sendingEnabled) {
      throw new SesError("AccountSendingPausedException", "Account sending paused.");
    }
    const message = await findOriginal(request, context);
    await checkSender(request, context);
    const bounce = context.services.bounce!;
    const messageId = newMessageId(randomBytes);
    const dsn = request.messageDsn;
    let raw: Buffer;
    try {
      raw = buildDsnReport({
        reportingMta: dsn?.ReportingMta ?? `dns; ${bounce.hostname}`,
        arrivalDate: dsn?.ArrivalDate ?? message.receivedAt,
        ...(dsn?.ExtensionFields ? { extensionFields: dsn.ExtensionFields } : {}),
        date: context.now,
        messageId: `<${messageId}@${bounce.hostname}>`,
        from: request.bounceSender,
        to: message.mailFrom,
        message: request.explanation ?? DEFAULT_EXPLANATION,
        originalHeaders: message.headers,
        ...(message.originalMessageId === undefined ? {} : { originalMessageId: message.originalMessageId }),
        recipients: request.recipients.map((info) => recipientBlock(info, request.explanation)),
      });
    } catch (error) {
      throw new SesError("InvalidParameterValue", (error as Error).message);
    }
    await bounce.send({ to: message.mailFrom, raw });
    return { MessageId: messageId };
  }),
];
