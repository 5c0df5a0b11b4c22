export { MessageParseError, parseHeaderBlock, parseMessageHead, readMessageHead } from "./headers.js";
export type { MessageHead, MessageHeadOptions } from "./headers.js";
export { commonHeaders, destinationAddresses } from "./common-headers.js";
export type { CommonHeaders } from "./common-headers.js";
export { envelopeFromHeaders } from "./envelope.js";
export { MESSAGE_ID_BYTES, MESSAGE_ID_LENGTH, isMessageId, messageIdFromBytes, newMessageId } from "./message-id.js";
export { formatHeaderLine, prependHeadersStream, prependedHeaderBytes, withPrependedHeaders } from "./edit.js";
export { storedMessage } from "./stored.js";
export type { ReceiptFacts, StoredMessage } from "./stored.js";
