/** Replies docs/behaviour.md leaves to us. */
export const LISTENER_REPLIES = {
  tooManyConnections: "421 4.7.0 Too many connections, try again later",
  tooManyConnectionsFromIp: "421 4.7.0 Too many connections from your address, try again later",
  commandDeadline: "421 4.4.2 Command not received in time, closing connection",
  dataDeadline: "421 4.4.2 Message not received in time, closing connection",
  shuttingDown: "421 4.3.2 Service shutting down, try again later",
  localError: "451 4.3.0 Local error in processing, try again later",
  proxyNotAllowed: "554 5.7.1 PROXY header not accepted from this address",
  unstorableRecipient: "553 5.1.3 Recipient local part not accepted here",
  nonAsciiAddress: "553 5.6.7 Non-ASCII address without SMTPUTF8",
  invalidUtf8Address: "553 5.6.7 Address is not valid UTF-8",
  // A size limit, like the message's own (docs/behaviour.md §4).
  headerTooLarge: "552 5.3.4 Message header block exceeds local limits",
} as const;

/** The error smtp-server turns into this reply. */
export function replyError(reply: string): Error & { responseCode: number } {
  return Object.assign(new Error(reply.slice(4)), { responseCode: Number(reply.slice(0, 3)) });
}

export function splitReply(reply: string): { code: number; message: string } {
  return { code: Number(reply.slice(0, 3)), message: reply.slice(4) };
}
