import MailComposer from "nodemailer/lib/mail-composer";

/**
 * The message that confirms an email address identity under DNS verification, as SES sends
 * its "Email Address Verification Request": one link, good for 24 hours.
 */
export async function confirmationMessage(input: { from: string; to: string; region: string; link: string; date: Date; messageId: string }): Promise<Buffer> {
  const text = [
    "Dear receiptd customer,",
    "",
    `We have received a request to authorize this email address for use with receiptd in region ${input.region}. If you requested this verification, please go to the following URL to confirm that you are authorized to use this email address:`,
    "",
    input.link,
    "",
    "Your request will not be processed unless you confirm the address using this URL. This link expires 24 hours after your original verification request.",
    "",
    "If you did not request to verify this email address, do not click on the link.",
    "",
  ].join("\n");
  const node = new MailComposer({
    from: input.from,
    to: input.to,
    subject: `receiptd Email Address Verification Request in region ${input.region}`,
    text,
    date: input.date,
    messageId: input.messageId,
    headers: { "Auto-Submitted": "auto-generated" },
  }).compile();
  return node.build();
}
