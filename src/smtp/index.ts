export type { ListenerPolicy } from "./admission.js";
export type {
  DataRefusalReason,
  ListenerRefusalReason,
  MailRefusalReason,
  RcptRefusalReason,
  RefusalReason,
  SmtpEvent,
} from "./events.js";
export { DEFAULT_MAX_MESSAGE_BYTES, SmtpListener } from "./listener.js";
export type { AcceptedSession, ClientInfo } from "./data.js";
export type { BoundAddress, ListenAddress, ReverseDnsOptions, SmtpListenerOptions } from "./listener.js";
export { SmtpServerPatchError } from "./patches.js";
export { LISTENER_REPLIES } from "./replies.js";
export type { ReverseResolver } from "./reverse-dns.js";
