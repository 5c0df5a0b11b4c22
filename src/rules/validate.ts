import { domainToASCII } from "node:url";
import type {
  DescribeReceiptRuleSetResponse,
  ListReceiptFiltersResponse,
  ReceiptFilter,
  ReceiptIpFilter,
  ReceiptRule,
  ReceiptRuleSetMetadata,
} from "@aws-sdk/client-ses";
import IPCIDR from "ip-cidr";
import { ACTION_KEYS } from "./model.js";
import type { ActionParamsByType, ActionType, IpFilter, Rule, RuleAction, RuleSet } from "./model.js";
import { RULE_SET_LIMITS } from "../ses/limits.js";

/** One problem in a document. `path` is a JSON path such as `Rules[3].Actions[1].BounceAction`; "" is the root. */
export interface ValidationIssue {
  path: string;
  message: string;
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; issues: ValidationIssue[] };

/** SES always names a rule set, but a hand-written document may leave Metadata out; it gets this name. */
const DEFAULT_RULE_SET_NAME = "default";

// ---------------------------------------------------------------------------------------------
// The checking machinery: a document is described by nested checks; each check reports every
// problem it finds at its path and never stops at the first, so that one run lists them all.

type Issues = ValidationIssue[];
type Check = (value: unknown, path: string, issues: Issues) => void;

interface Field {
  required: boolean;
  check: Check;
}

/** The fields of an SES shape; keyed by the SDK type so that a field SES adds or renames fails to compile here. */
type Shape<T> = { readonly [K in keyof T]-?: Field };

const required = (check: Check): Field => ({ required: true, check });
const optional = (check: Check): Field => ({ required: false, check });

function keyPath(path: string, key: string): string {
  if (!/^[A-Za-z_$][\w$]*$/.test(key)) return `${path}[${JSON.stringify(key)}]`;
  return path === "" ? key : `${path}.${key}`;
}

function preview(s: string): string {
  return s.length <= 64 ? JSON.stringify(s) : `${JSON.stringify(s.slice(0, 60))}… (${s.length} characters)`;
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return "an array";
  switch (typeof value) {
    case "string":
      return `a string (${preview(value)})`;
    case "number":
    case "boolean":
      return `a ${typeof value} (${String(value)})`;
    default:
      return "an object";
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

const typeIssue = (path: string, expected: string, value: unknown): ValidationIssue => ({
  path,
  message: `expected ${expected}, found ${describe(value)}`,
});

const boolean: Check = (value, path, issues) => {
  if (typeof value !== "boolean") issues.push(typeIssue(path, "a boolean (true or false)", value));
};

/** Returns what was expected when `s` breaks the rule, undefined when it keeps it. */
type StringRule = (s: string) => string | undefined;

/** A string that keeps every rule; only the first broken rule is reported, as later ones would repeat it. */
function text(...rules: StringRule[]): Check {
  return (value, path, issues) => {
    if (typeof value !== "string") {
      issues.push(typeIssue(path, "a string", value));
      return;
    }
    for (const rule of rules) {
      const expected = rule(value);
      if (expected !== undefined) {
        issues.push({ path, message: `expected ${expected}, found ${preview(value)}` });
        return;
      }
    }
  };
}

const matches =
  (re: RegExp, expected: string): StringRule =>
  (s) =>
    re.test(s) ? undefined : expected;

const oneOf =
  (...values: string[]): StringRule =>
  (s) =>
    values.includes(s) ? undefined : `one of ${values.map((v) => JSON.stringify(v)).join(", ")}`;

const unknownKey = (path: string, key: string, what: string, allowed: string): ValidationIssue => ({
  path: keyPath(path, key),
  message: `unknown key ${JSON.stringify(key)} in ${what}; allowed keys: ${allowed}`,
});

/** A check of a whole object, after its fields: for constraints between fields. */
type Refine = (obj: Record<string, unknown>, path: string, issues: Issues) => void;

function object<T>(what: string, shape: Shape<T>, refine?: Refine): Check {
  const fields = new Map<string, Field>(Object.entries<Field>(shape));
  const allowed = [...fields.keys()].join(", ");
  return (value, path, issues) => {
    if (!isRecord(value)) {
      issues.push(typeIssue(path, `an object (${what})`, value));
      return;
    }
    for (const [key, child] of Object.entries(value)) {
      const field = fields.get(key);
      // An undefined value is an absent key, as JSON.stringify and the SDK types have it.
      if (field) {
        if (child !== undefined) field.check(child, keyPath(path, key), issues);
      } else {
        issues.push(unknownKey(path, key, what, allowed));
      }
    }
    for (const [key, field] of fields) {
      if (field.required && value[key] === undefined) {
        issues.push({ path: keyPath(path, key), message: `missing required key ${key} in ${what}` });
      }
    }
    refine?.(value, path, issues);
  };
}

interface ListOptions {
  max: number;
  noun: string;
  /** A key whose string values must differ between elements (SES answers AlreadyExists). */
  uniqueKey?: string;
}

function list(item: Check, { max, noun, uniqueKey }: ListOptions): Check {
  return (value, path, issues) => {
    if (!Array.isArray(value)) {
      issues.push(typeIssue(path, `an array of ${noun}`, value));
      return;
    }
    if (value.length > max) issues.push({ path, message: `expected at most ${max} ${noun}, found ${value.length}` });
    const firstPathOf = new Map<string, string>();
    value.forEach((element: unknown, index) => {
      const elementPath = `${path}[${index}]`;
      item(element, elementPath, issues);
      const key = uniqueKey !== undefined && isRecord(element) ? element[uniqueKey] : undefined;
      if (uniqueKey === undefined || typeof key !== "string") return;
      const first = firstPathOf.get(key);
      const here = keyPath(elementPath, uniqueKey);
      if (first === undefined) {
        firstPathOf.set(key, here);
      } else {
        issues.push({ path: here, message: `expected a unique ${uniqueKey}, found ${preview(key)} again (first at ${first})` });
      }
    });
  };
}

const NAME = matches(
  /^[A-Za-z0-9](?:[\w.-]{0,61}[A-Za-z0-9])?$/,
  "a name of 1 to 63 ASCII letters, digits, '.', '_' or '-' that starts and ends with a letter or digit",
);

const nonEmpty: StringRule = (s) => (s.length > 0 ? undefined : "a non-empty string");

// A dot-atom local part (RFC 5322), with UTF-8 allowed as RFC 6531 does.
const ATOM = "(?:[\\w!#$%&'*+/=?^`{|}~-]|[^\\p{ASCII}])+";
const LOCAL_PART = new RegExp(`^${ATOM}(?:\\.${ATOM})*$`, "u");
const DOMAIN_SHAPE = /^[\p{L}\p{M}\p{N}-]+(?:\.[\p{L}\p{M}\p{N}-]+)+$/u;
const ASCII_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const NEEDS_IDNA = /[^\p{ASCII}]|(?:^|\.)xn--/iu;

/**
 * At least two labels of letters, digits and hyphens, as UTF-8 or as xn-- labels. The check
 * that rejects a single label catches the likelier mistake of an address without its domain.
 */
function isDomain(s: string): boolean {
  if (s.length > 253 || !DOMAIN_SHAPE.test(s)) return false;
  // domainToASCII is the slow path; it is only needed to validate and convert IDN labels.
  const ascii = NEEDS_IDNA.test(s) ? domainToASCII(s) : s.toLowerCase();
  if (ascii === "" || ascii.length > 253) return false;
  const labels = ascii.split(".");
  const tld = labels[labels.length - 1] ?? "";
  return labels.every((label) => ASCII_LABEL.test(label)) && !/^\d+$/.test(tld);
}

function isAddress(s: string): boolean {
  const at = s.lastIndexOf("@");
  const local = s.slice(0, at);
  return at > 0 && Buffer.byteLength(local) <= 64 && LOCAL_PART.test(local) && isDomain(s.slice(at + 1));
}

const address: StringRule = (s) => (isAddress(s) ? undefined : "an email address (user@example.com)");

const recipient: StringRule = (s) =>
  (s.includes("@") ? isAddress(s) : isDomain(s.startsWith(".") ? s.slice(1) : s))
    ? undefined
    : "an address (user@example.com), a domain (example.com) or a dot-prefixed domain (.example.com)";

const timestamp: StringRule = (s) => (Number.isNaN(Date.parse(s)) ? "a date and time (ISO 8601)" : undefined);

const cidr: StringRule = (s) => {
  // A zone index (fe80::1%eth0) names an interface of one host, which no filter can mean.
  const valid = !s.includes("%") && (s.includes("/") ? IPCIDR.isValidCIDR(s) : IPCIDR.isValidAddress(s));
  return valid ? undefined : "an IPv4 or IPv6 address or CIDR range (10.0.0.0/24, 2001:db8::/32)";
};

const PARTITION = "aws(?:-cn|-us-gov)?";
const REGION = "[a-z]{2}(?:-[a-z]+)+-\\d{1,2}";
const ACCOUNT = "\\d{12}";

/** `region` is false for global services (IAM), whose ARNs leave the region empty. */
function arn(service: string, region: boolean, resource: string, example: string): Check {
  const re = new RegExp(`^arn:${PARTITION}:${service}:${region ? REGION : ""}:${ACCOUNT}:${resource}$`);
  return text(matches(re, `an ARN like ${example}`));
}

const TOPIC_ARN = arn("sns", true, "[\\w-]{1,256}", "arn:aws:sns:us-east-1:123456789012:my-topic");
const KMS_KEY_ARN = arn(
  "kms",
  true,
  "(?:key/[\\w-]+|alias/[\\w/-]+)",
  "arn:aws:kms:us-east-1:123456789012:alias/aws/ses",
);
const IAM_ROLE_ARN = arn(
  "iam",
  false,
  "role/(?:[\\w+=,.@-]+/)*[\\w+=,.@-]{1,64}",
  "arn:aws:iam::123456789012:role/ses-to-s3",
);
const FUNCTION_ARN = arn(
  "lambda",
  true,
  "function:[\\w-]{1,64}(?::(?:\\$LATEST|[\\w-]{1,128}))?",
  "arn:aws:lambda:us-east-1:123456789012:function:my-function",
);
const ORGANIZATION_ARN = arn(
  "workmail",
  true,
  "organization/m-[0-9a-f]{32}",
  "arn:aws:workmail:us-east-1:123456789012:organization/m-68755160c4cb4e29a2b2f8fb58f359d7",
);

const CONNECT_INSTANCE_ARN = arn(
  "connect",
  true,
  "instance/[\\w-]{1,128}",
  "arn:aws:connect:us-east-1:123456789012:instance/a1b2c3d4-5678-90ab-cdef-111122223333",
);

// S3 keys are at most 1024 bytes and SES appends the 40-character message ID to the prefix.
const MAX_PREFIX_BYTES = 1024 - 40;

const S3_BUCKET = text(
  matches(
    /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/,
    "an S3 bucket name of 3 to 63 lowercase letters, digits, '.' or '-' that starts and ends with a letter or digit",
  ),
  matches(/^(?!.*\.\.)/, "an S3 bucket name without two adjacent periods"),
  matches(/^(?!\d+\.\d+\.\d+\.\d+$)/, "an S3 bucket name that is not formatted as an IP address"),
);

const SMTP_REPLY_CODE = /^[45]\d\d$/;
const STATUS_CODE = /^[45]\.\d{1,3}\.\d{1,3}$/;

function statusClassMatchesReply(action: Record<string, unknown>, path: string, issues: Issues): void {
  const { SmtpReplyCode: reply, StatusCode: status } = action;
  if (typeof reply !== "string" || typeof status !== "string") return;
  if (!SMTP_REPLY_CODE.test(reply) || !STATUS_CODE.test(status) || reply[0] === status[0]) return;
  issues.push({
    path: keyPath(path, "StatusCode"),
    message: `expected a status code of class ${reply[0]} like SmtpReplyCode ${preview(reply)}, found ${preview(status)}`,
  });
}

const ACTION_SHAPES: { [T in ActionType]: Check } = {
  S3: object<ActionParamsByType["S3"]>(ACTION_KEYS.S3, {
    BucketName: required(S3_BUCKET),
    ObjectKeyPrefix: optional(
      text((s) =>
        Buffer.byteLength(s) <= MAX_PREFIX_BYTES ? undefined : `a prefix of at most ${MAX_PREFIX_BYTES} bytes in UTF-8`,
      ),
    ),
    KmsKeyArn: optional(KMS_KEY_ARN),
    IamRoleArn: optional(IAM_ROLE_ARN),
    TopicArn: optional(TOPIC_ARN),
  }),
  SNS: object<ActionParamsByType["SNS"]>(ACTION_KEYS.SNS, {
    TopicArn: required(TOPIC_ARN),
    Encoding: optional(text(oneOf("UTF-8", "Base64"))),
  }),
  Bounce: object<ActionParamsByType["Bounce"]>(
    ACTION_KEYS.Bounce,
    {
      SmtpReplyCode: required(text(matches(SMTP_REPLY_CODE, "an SMTP reply code of the form [45]\\d\\d (550)"))),
      StatusCode: optional(
        text(matches(STATUS_CODE, "an enhanced status code of the form [45].\\d{1,3}.\\d{1,3} (5.1.1)")),
      ),
      Message: required(text(nonEmpty)),
      Sender: required(text(address)),
      TopicArn: optional(TOPIC_ARN),
    },
    statusClassMatchesReply,
  ),
  Lambda: object<ActionParamsByType["Lambda"]>(ACTION_KEYS.Lambda, {
    FunctionArn: required(FUNCTION_ARN),
    InvocationType: optional(text(oneOf("Event", "RequestResponse"))),
    TopicArn: optional(TOPIC_ARN),
  }),
  Stop: object<ActionParamsByType["Stop"]>(ACTION_KEYS.Stop, {
    Scope: required(text(oneOf("RuleSet"))),
    TopicArn: optional(TOPIC_ARN),
  }),
  AddHeader: object<ActionParamsByType["AddHeader"]>(ACTION_KEYS.AddHeader, {
    HeaderName: required(
      text(matches(/^[A-Za-z0-9-]{1,50}$/, "a header name of 1 to 50 ASCII letters, digits or '-'")),
    ),
    HeaderValue: required(
      text(
        (s) => (s.length < 2048 ? undefined : "a header value under 2048 characters"),
        matches(/^[^\r\n]*$/, "a header value without CR or LF"),
      ),
    ),
  }),
  WorkMail: object<ActionParamsByType["WorkMail"]>(ACTION_KEYS.WorkMail, {
    OrganizationArn: required(ORGANIZATION_ARN),
    TopicArn: optional(TOPIC_ARN),
  }),
  // Accepted so that a real SES rule set loads; running it fails by name (docs/behaviour.md §8).
  Connect: object<ActionParamsByType["Connect"]>(ACTION_KEYS.Connect, {
    InstanceARN: required(CONNECT_INSTANCE_ARN),
    IAMRoleARN: required(IAM_ROLE_ARN),
  }),
};

const TYPE_BY_KEY = new Map<string, ActionType>(
  (Object.keys(ACTION_KEYS) as ActionType[]).map((type) => [ACTION_KEYS[type], type]),
);
const ACTION_KEY_LIST = [...TYPE_BY_KEY.keys()].join(", ");

/** A ReceiptAction: an object with exactly one action key. */
const receiptAction: Check = (value, path, issues) => {
  if (!isRecord(value)) {
    issues.push(typeIssue(path, `an object with one of ${ACTION_KEY_LIST}`, value));
    return;
  }
  const keys = Object.keys(value);
  const actionKeys = keys.filter((key) => TYPE_BY_KEY.has(key));
  if (keys.length === 0 || actionKeys.length > 1) {
    const found = keys.length === 0 ? "none" : `${actionKeys.length}: ${actionKeys.join(", ")}`;
    issues.push({ path, message: `expected exactly one action key (${ACTION_KEY_LIST}), found ${found}` });
  }
  for (const key of keys) {
    const type = TYPE_BY_KEY.get(key);
    if (type) ACTION_SHAPES[type](value[key], keyPath(path, key), issues);
    else issues.push(unknownKey(path, key, "ReceiptAction", ACTION_KEY_LIST));
  }
};

const RECEIPT_RULE = object<ReceiptRule>("ReceiptRule", {
  Name: required(text(NAME)),
  Enabled: optional(boolean),
  TlsPolicy: optional(text(oneOf("Require", "Optional"))),
  Recipients: optional(list(text(recipient), { max: RULE_SET_LIMITS.recipientsPerRule, noun: "recipients" })),
  Actions: optional(list(receiptAction, { max: RULE_SET_LIMITS.actionsPerRule, noun: "actions" })),
  ScanEnabled: optional(boolean),
});

const RULE_SET_DOCUMENT = object<DescribeReceiptRuleSetResponse>(
  "the output of aws ses describe-active-receipt-rule-set or describe-receipt-rule-set",
  {
    Metadata: optional(
      object<ReceiptRuleSetMetadata>("ReceiptRuleSetMetadata", {
        Name: optional(text(NAME)),
        CreatedTimestamp: optional(text(timestamp)),
      }),
    ),
    Rules: optional(list(RECEIPT_RULE, { max: RULE_SET_LIMITS.rulesPerSet, noun: "rules", uniqueKey: "Name" })),
  },
);

const FILTERS_DOCUMENT = object<ListReceiptFiltersResponse>("the output of aws ses list-receipt-filters", {
  Filters: optional(
    list(
      object<ReceiptFilter>("ReceiptFilter", {
        Name: required(text(NAME)),
        IpFilter: required(
          object<ReceiptIpFilter>("ReceiptIpFilter", {
            Policy: required(text(oneOf("Allow", "Block"))),
            Cidr: required(text(cidr)),
          }),
        ),
      }),
      { max: RULE_SET_LIMITS.filters, noun: "IP filters", uniqueKey: "Name" },
    ),
  ),
});

// ---------------------------------------------------------------------------------------------
// Building the model. These types describe a document that passed its check; the casts to them
// below are sound only for such documents.

interface ValidRule {
  Name: string;
  Enabled?: boolean;
  TlsPolicy?: Rule["tlsPolicy"];
  Recipients?: string[];
  Actions?: Record<string, object>[];
  ScanEnabled?: boolean;
}

interface ValidRuleSet {
  Metadata?: { Name?: string; CreatedTimestamp?: string };
  Rules?: ValidRule[];
}

interface ValidFilters {
  Filters?: { Name: string; IpFilter: { Policy: IpFilter["policy"]; Cidr: string } }[];
}

function toAction(action: Record<string, object>): RuleAction {
  const [[key, params]] = Object.entries(action) as [[string, object]];
  // The check pinned the key to one of ACTION_KEYS and its params to that action's shape.
  return { type: TYPE_BY_KEY.get(key), params: { ...params } } as RuleAction;
}

function toRule(rule: ValidRule): Rule {
  return {
    name: rule.Name,
    enabled: rule.Enabled ?? false,
    tlsPolicy: rule.TlsPolicy ?? "Optional",
    recipients: [...(rule.Recipients ?? [])],
    scanEnabled: rule.ScanEnabled ?? false,
    actions: (rule.Actions ?? []).map(toAction),
  };
}

/**
 * A loaded rule set is the snapshot that accepted messages are evaluated against (docs/behaviour.md
 * §1), possibly long after a reload: frozen, nothing can change it under them.
 */
function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

function run<T>(check: Check, doc: unknown, build: () => T): Parsed<T> {
  const issues: Issues = [];
  check(doc, "", issues);
  return issues.length > 0 ? { ok: false, issues } : { ok: true, value: build() };
}

/**
 * Validates the output of `aws ses describe-active-receipt-rule-set` (or `describe-receipt-rule-set`,
 * which has the same shape). Both keys are optional, as in the SDK, so `{}` is an empty set.
 */
export function parseRuleSet(doc: unknown): Parsed<RuleSet> {
  return run(RULE_SET_DOCUMENT, doc, () => {
    const { Metadata, Rules = [] } = doc as ValidRuleSet;
    const ruleSet: RuleSet = { name: Metadata?.Name ?? DEFAULT_RULE_SET_NAME, rules: Rules.map(toRule) };
    if (Metadata?.CreatedTimestamp !== undefined) ruleSet.createdTimestamp = Metadata.CreatedTimestamp;
    return deepFreeze(ruleSet);
  });
}

/** Validates the output of `aws ses list-receipt-filters`. */
export function parseFilters(doc: unknown): Parsed<IpFilter[]> {
  return run(FILTERS_DOCUMENT, doc, () =>
    ((doc as ValidFilters).Filters ?? []).map((filter) => ({
      name: filter.Name,
      policy: filter.IpFilter.Policy,
      cidr: filter.IpFilter.Cidr,
    })),
  );
}
