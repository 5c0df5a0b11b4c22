import type { Rule, RuleAction, RuleSet } from "../../src/rules/model.js";

/** A rule in the validated model, enabled unless told otherwise. */
export function rule(name: string, recipients: string[], actions: RuleAction[] = [], extra: Partial<Rule> = {}): Rule {
  return { name, enabled: true, tlsPolicy: "Optional", recipients, scanEnabled: false, actions, ...extra };
}

export function ruleSet(...rules: Rule[]): RuleSet {
  return { name: "test", rules };
}

export const s3 = (BucketName: string, ObjectKeyPrefix?: string): RuleAction => ({
  type: "S3",
  params: ObjectKeyPrefix === undefined ? { BucketName } : { BucketName, ObjectKeyPrefix },
});
export const sns = (TopicArn: string): RuleAction => ({ type: "SNS", params: { TopicArn } });
export const stop = (): RuleAction => ({ type: "Stop", params: { Scope: "RuleSet" } });
export const addHeader = (HeaderName: string, HeaderValue: string): RuleAction => ({
  type: "AddHeader",
  params: { HeaderName, HeaderValue },
});
export const lambda = (FunctionArn: string, InvocationType: "Event" | "RequestResponse" = "Event"): RuleAction => ({
  type: "Lambda",
  params: { FunctionArn, InvocationType },
});
export const bounce = (): RuleAction => ({
  type: "Bounce",
  params: { SmtpReplyCode: "550", StatusCode: "5.1.1", Message: "No such user", Sender: "postmaster@example.com" },
});
export const workmail = (): RuleAction => ({
  type: "WorkMail",
  params: { OrganizationArn: "arn:aws:workmail:us-east-1:123456789012:organization/m-68755160c4cb4e29a2b2f8fb58f359d7" },
});
