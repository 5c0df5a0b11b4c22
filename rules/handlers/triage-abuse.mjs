// An SES Lambda function as it would run on AWS: it reads the event SES sends and answers a
// RequestResponse invocation with a disposition. receiptd's local back end calls it as is.
export const handler = async (event) => {
  const { mail, receipt } = event.Records[0].ses;
  const subject = mail.commonHeaders.subject ?? "";
  const looksLikeSpam = receipt.spamVerdict.status === "FAIL" || /\bunsubscribe\b/i.test(subject);
  // STOP_RULE_SET drops obvious spam; anything else lets the rule go on to its Stop action.
  return { disposition: looksLikeSpam ? "STOP_RULE_SET" : "CONTINUE" };
};
