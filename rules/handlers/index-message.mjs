// An asynchronous (Event) SES Lambda function: SES ignores what it returns. It summarises
// the message the way a search indexer might.
export const handler = async (event) => {
  const { mail, receipt } = event.Records[0].ses;
  return {
    messageId: mail.messageId,
    from: mail.commonHeaders.from ?? [],
    subject: mail.commonHeaders.subject ?? "",
    recipients: receipt.recipients,
  };
};
