import type { ReceiptAction, ReceiptFilter, ReceiptRule } from "@aws-sdk/client-ses";
import { ACTION_KEYS } from "../../rules/model.js";
import type { Rule, RuleSet } from "../../rules/model.js";
import {
  activeRuleSet,
  checkedRule,
  cloneReceiptRuleSet,
  createReceiptFilter,
  createReceiptRule,
  createReceiptRuleSet,
  deleteReceiptFilter,
  deleteReceiptRule,
  deleteReceiptRuleSet,
  describeReceiptRule,
  describeReceiptRuleSet,
  reorderReceiptRuleSet,
  setActiveReceiptRuleSet,
  setReceiptRulePosition,
  toReceiptRuleJson,
  updateReceiptRule,
} from "../../rules/store.js";
import type { ReceiptState } from "../../rules/store.js";
import type { ScopeState } from "../../store/store.js";
import { SesError } from "../operation.js";
import type { Operation, OperationContext, Params, XmlStruct, XmlValue } from "../operation.js";
import { checkName, operation, optionalName, read, requiredName, sesErrorOf, write } from "./common.js";
import { verifiedIdentityOf } from "./identities.js";

/** ListReceiptRuleSets' page: SES documents "up to 100 receipt rule sets at a time". */
export const RULE_SETS_PER_PAGE = 100;

/** A state with a new receipt part, or the same state when the receipt part did not change. */
function withReceipt(state: ScopeState, receipt: ReceiptState): { state: ScopeState } {
  return { state: receipt === state.receipt ? state : Object.freeze({ ...state, receipt }) };
}

/** The members of one action structure, all strings in SES's model. */
function actionJson(action: Params): ReceiptAction {
  const json: Record<string, Record<string, string>> = {};
  for (const key of Object.values(ACTION_KEYS)) {
    const struct = action.struct(key);
    if (!struct) continue;
    const members: Record<string, string> = {};
    for (const member of struct.members()) {
      const value = struct.string(member);
      if (value !== undefined) members[member] = value;
    }
    json[key] = members;
  }
  return json as ReceiptAction;
}

/** A ReceiptRule from the Query form, in the SES JSON that rule set files hold, for the one validator. */
export function ruleJson(rule: Params): Partial<ReceiptRule> {
  const json: Record<string, unknown> = {};
  const name = rule.string("Name");
  if (name !== undefined) json.Name = name;
  const enabled = rule.boolean("Enabled");
  if (enabled !== undefined) json.Enabled = enabled;
  const tls = rule.string("TlsPolicy");
  if (tls !== undefined) json.TlsPolicy = tls;
  const scan = rule.boolean("ScanEnabled");
  if (scan !== undefined) json.ScanEnabled = scan;
  const recipients = rule.strings("Recipients");
  if (recipients !== undefined) json.Recipients = recipients;
  const actions = rule.structs("Actions");
  if (actions !== undefined) json.Actions = actions.map(actionJson);
  return json as Partial<ReceiptRule>;
}

/**
 * What SES checks of a rule beyond its shape (reference §3.2), before anything is written: its
 * targets exist where the configured back end can tell, with SES's codes and messages.
 */
async function checkTargets(rule: Rule, context: OperationContext): Promise<void> {
  const exists = context.services.targetExists;
  if (!exists) return;
  for (const action of rule.actions) {
    if (action.type === "S3" && action.params.BucketName !== undefined) {
      const bucket = action.params.BucketName;
      if ((await exists({ service: "S3", bucket })) === false) throw new SesError("InvalidS3Configuration", `No such bucket: ${bucket}`, 400, { Bucket: bucket });
    }
    if (action.type === "Lambda" && action.params.FunctionArn !== undefined) {
      const functionArn = action.params.FunctionArn;
      if ((await exists({ service: "Lambda", functionArn })) === false) {
        throw new SesError("InvalidLambdaFunction", `Could not invoke Lambda function: ${functionArn}`, 400, { FunctionArn: functionArn });
      }
    }
    const topicArn = "TopicArn" in action.params ? action.params.TopicArn : undefined;
    if (topicArn !== undefined && (await exists({ service: "SNS", topicArn })) === false) {
      throw new SesError("InvalidSnsTopic", `Could not publish to SNS topic: ${topicArn}`, 400, { Topic: topicArn });
    }
  }
}

/** A Bounce action's Sender must be verified in the scope, itself or its domain (reference §3.2). */
function checkBounceSenders(rule: Rule, state: ScopeState): void {
  for (const action of rule.actions) {
    const sender = action.type === "Bounce" ? action.params.Sender : undefined;
    if (sender !== undefined && verifiedIdentityOf(state, sender) === null) {
      throw new SesError("InvalidParameterValue", `Identity is not verified: ${sender}`);
    }
  }
}

/** The rule checked by the rule-file validator, then its targets: validation errors come first. */
async function checkedRuleOf(json: ReceiptRule, context: OperationContext): Promise<Rule> {
  let rule: Rule;
  try {
    rule = checkedRule(json);
  } catch (error) {
    throw sesErrorOf(error);
  }
  await checkTargets(rule, context);
  return rule;
}

/** What the validator gets; it names a missing Name or IpFilter member. */
function filterJson(filter: Params): Partial<ReceiptFilter> {
  const ip = filter.struct("IpFilter");
  const json: Record<string, unknown> = {};
  const name = filter.string("Name");
  if (name !== undefined) json.Name = name;
  if (ip) {
    const cidr = ip.string("Cidr");
    const policy = ip.string("Policy");
    json.IpFilter = { ...(cidr === undefined ? {} : { Cidr: cidr }), ...(policy === undefined ? {} : { Policy: policy }) };
  }
  return json as Partial<ReceiptFilter>;
}

/**
 * A rule as Describe answers it: what was stored, with the defaults SES fills in for members the
 * caller left out (SNS Encoding, Lambda InvocationType), which Terraform reads back.
 */
function ruleXml(rule: Rule): XmlStruct {
  const json = toReceiptRuleJson(rule);
  const actions = (json.Actions ?? []).map((action) => {
    if (action.SNSAction && action.SNSAction.Encoding === undefined) return { SNSAction: { ...action.SNSAction, Encoding: "UTF-8" } };
    if (action.LambdaAction && action.LambdaAction.InvocationType === undefined) {
      return { LambdaAction: { ...action.LambdaAction, InvocationType: "Event" } };
    }
    return action;
  });
  return { ...json, Recipients: json.Recipients ?? [], Actions: actions } as unknown as XmlStruct;
}

function metadataXml(ruleSet: RuleSet): XmlStruct {
  return {
    Name: ruleSet.name,
    ...(ruleSet.createdTimestamp === undefined ? {} : { CreatedTimestamp: new Date(ruleSet.createdTimestamp) }),
  };
}

function ruleSetXml(ruleSet: RuleSet): XmlStruct {
  return { Metadata: metadataXml(ruleSet), Rules: ruleSet.rules.map(ruleXml) };
}

/** File mode (README "Where the state lives"): what the files own is read-only here. */
function refuseFileOwned(context: OperationContext, what: { ruleSet?: string; active?: boolean; filters?: boolean }): void {
  const owned = context.services.fileOwned?.(context.scope);
  if (!owned) return;
  const file = (part: string, path: string, verb = "is") =>
    new SesError("InvalidParameterValue", `${part} ${verb} managed by the file ${path} (receiptd file mode); change the file`);
  if (what.ruleSet !== undefined && owned.ruleSet === what.ruleSet) throw file(`rule set ${what.ruleSet}`, owned.rulesFile);
  if (what.active === true) throw file("the active rule set", owned.rulesFile);
  if (what.filters === true && owned.filtersFile !== undefined) throw file("the IP filters", owned.filtersFile, "are");
}

/** The page of rule sets after `token` (the name of the last set of the previous page, base64). */
function page(ruleSets: RuleSet[], token: string | undefined, size: number): { sets: RuleSet[]; next?: string } {
  let start = 0;
  if (token !== undefined) {
    const after = Buffer.from(token, "base64url").toString("utf8");
    const index = ruleSets.findIndex((set) => set.name === after);
    if (index < 0) throw new SesError("InvalidParameterValue", `Invalid NextToken: ${token}`);
    start = index + 1;
  }
  const sets = ruleSets.slice(start, start + size);
  const last = sets.at(-1);
  return start + size < ruleSets.length && last ? { sets, next: Buffer.from(last.name).toString("base64url") } : { sets };
}

export function receiptOperations(options: { pageSize?: number } = {}): Operation[] {
  const pageSize = options.pageSize ?? RULE_SETS_PER_PAGE;
  return [
    operation("CreateReceiptRuleSet", { writes: true }, async (params, context) => {
      const name = requiredName(params, "RuleSetName");
      await write(context, "CreateReceiptRuleSet", { RuleSetName: name }, (state) =>
        withReceipt(state, createReceiptRuleSet(state.receipt, name, context.now)),
      );
      return {};
    }),
    operation("CloneReceiptRuleSet", { writes: true }, async (params, context) => {
      const name = requiredName(params, "RuleSetName");
      const original = requiredName(params, "OriginalRuleSetName");
      refuseFileOwned(context, { ruleSet: name });
      await write(context, "CloneReceiptRuleSet", { RuleSetName: name, OriginalRuleSetName: original }, (state) =>
        withReceipt(state, cloneReceiptRuleSet(state.receipt, name, original, context.now)),
      );
      return {};
    }),
    operation("DeleteReceiptRuleSet", { writes: true }, async (params, context) => {
      const name = requiredName(params, "RuleSetName");
      refuseFileOwned(context, { ruleSet: name });
      await write(context, "DeleteReceiptRuleSet", { RuleSetName: name }, (state) =>
        withReceipt(state, deleteReceiptRuleSet(state.receipt, name)),
      );
      return {};
    }),
    operation("DescribeReceiptRuleSet", { writes: false }, async (params, context) => {
      const name = requiredName(params, "RuleSetName");
      return read(context, (state) => ruleSetXml(describeReceiptRuleSet(state.receipt, name)));
    }),
    operation("ListReceiptRuleSets", { writes: false }, async (params, context) => {
      const token = params.string("NextToken");
      return read(context, (state) => {
        const { sets, next } = page([...state.receipt.ruleSets.values()], token, pageSize);
        return { RuleSets: sets.map(metadataXml), ...(next === undefined ? {} : { NextToken: next }) };
      });
    }),
    operation("SetActiveReceiptRuleSet", { writes: true }, async (params, context) => {
      const name = optionalName(params, "RuleSetName");
      refuseFileOwned(context, { active: true });
      await write(context, "SetActiveReceiptRuleSet", { RuleSetName: name ?? "(none)" }, (state) => {
        if (state.receipt.activeName === (name ?? null)) return { state };
        return withReceipt(state, setActiveReceiptRuleSet(state.receipt, name));
      });
      return {};
    }),
    operation("DescribeActiveReceiptRuleSet", { writes: false }, async (_params, context) =>
      read(context, (state) => {
        const active = activeRuleSet(state.receipt);
        // With none active SES answers an empty result: no Metadata, no Rules (reference §3.1).
        return active ? ruleSetXml(active) : {};
      }),
    ),
    operation("ReorderReceiptRuleSet", { writes: true }, async (params, context) => {
      const name = requiredName(params, "RuleSetName");
      const names = params.strings("RuleNames");
      if (names === undefined) throw new SesError("MissingParameter", "The request must contain the parameter RuleNames");
      names.forEach((ruleName) => checkName(ruleName, "RuleNames"));
      refuseFileOwned(context, { ruleSet: name });
      await write(context, "ReorderReceiptRuleSet", { RuleSetName: name }, (state) =>
        withReceipt(state, reorderReceiptRuleSet(state.receipt, name, names)),
      );
      return {};
    }),
    operation("CreateReceiptRule", { writes: true }, async (params, context) => {
      const name = requiredName(params, "RuleSetName");
      const after = optionalName(params, "After");
      const rule = ruleStruct(params);
      refuseFileOwned(context, { ruleSet: name });
      const checked = await checkedRuleOf(rule, context);
      await write(context, "CreateReceiptRule", { RuleSetName: name, RuleName: rule.Name }, (state) => {
        const next = createReceiptRule(state.receipt, name, rule, after);
        checkBounceSenders(checked, state);
        return withReceipt(state, next);
      });
      return {};
    }),
    operation("UpdateReceiptRule", { writes: true }, async (params, context) => {
      const name = requiredName(params, "RuleSetName");
      const rule = ruleStruct(params);
      refuseFileOwned(context, { ruleSet: name });
      const checked = await checkedRuleOf(rule, context);
      await write(context, "UpdateReceiptRule", { RuleSetName: name, RuleName: rule.Name }, (state) => {
        const next = updateReceiptRule(state.receipt, name, rule);
        checkBounceSenders(checked, state);
        return withReceipt(state, next);
      });
      return {};
    }),
    operation("DeleteReceiptRule", { writes: true }, async (params, context) => {
      const name = requiredName(params, "RuleSetName");
      const ruleName = requiredName(params, "RuleName");
      refuseFileOwned(context, { ruleSet: name });
      await write(context, "DeleteReceiptRule", { RuleSetName: name, RuleName: ruleName }, (state) =>
        withReceipt(state, deleteReceiptRule(state.receipt, name, ruleName)),
      );
      return {};
    }),
    operation("DescribeReceiptRule", { writes: false }, async (params, context) => {
      const name = requiredName(params, "RuleSetName");
      const ruleName = requiredName(params, "RuleName");
      return read(context, (state) => ({ Rule: ruleXml(describeReceiptRule(state.receipt, name, ruleName)) }));
    }),
    operation("SetReceiptRulePosition", { writes: true }, async (params, context) => {
      const name = requiredName(params, "RuleSetName");
      const ruleName = requiredName(params, "RuleName");
      const after = optionalName(params, "After");
      refuseFileOwned(context, { ruleSet: name });
      await write(context, "SetReceiptRulePosition", { RuleSetName: name, RuleName: ruleName, After: after }, (state) => {
        // Placing a rule after itself is a no-op on SES (reference §3.2), once both are known to exist.
        if (after === ruleName) {
          describeReceiptRule(state.receipt, name, ruleName);
          return { state };
        }
        return withReceipt(state, setReceiptRulePosition(state.receipt, name, ruleName, after));
      });
      return {};
    }),
    operation("CreateReceiptFilter", { writes: true }, async (params, context) => {
      const filter = params.struct("Filter");
      if (!filter) throw new SesError("MissingParameter", "The request must contain the parameter Filter");
      const json = filterJson(filter);
      refuseFileOwned(context, { filters: true });
      await write(context, "CreateReceiptFilter", { FilterName: json.Name }, (state) =>
        withReceipt(state, createReceiptFilter(state.receipt, json)),
      );
      return {};
    }),
    operation("DeleteReceiptFilter", { writes: true }, async (params, context) => {
      const name = requiredName(params, "FilterName");
      refuseFileOwned(context, { filters: true });
      await write(context, "DeleteReceiptFilter", { FilterName: name }, (state) =>
        withReceipt(state, deleteReceiptFilter(state.receipt, name)),
      );
      return {};
    }),
    operation("ListReceiptFilters", { writes: false }, async (_params, context) =>
      read(context, (state) => ({
        Filters: [...state.receipt.filters]
          .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
          .map((filter): XmlValue => ({ Name: filter.name, IpFilter: { Cidr: filter.cidr, Policy: filter.policy } })),
      })),
    ),
  ];
}

function ruleStruct(params: Params): ReceiptRule {
  const rule = params.struct("Rule");
  if (!rule) throw new SesError("MissingParameter", "The request must contain the parameter Rule");
  const json = ruleJson(rule);
  const name = json.Name;
  if (name === undefined) throw new SesError("MissingParameter", "The request must contain the parameter Rule.Name");
  checkName(name, "Rule.Name");
  return { ...json, Name: name };
}
