export { DEFAULT_MAX_MESSAGE_BYTES, LISTENER_REPLIES, SmtpListener } from "./listener.js";
export type {
  AcceptedSession,
  BoundAddress,
  ClientInfo,
  DataRefusalReason,
  ListenAddress,
  ListenerPolicy,
  RefusalReason,
  ReverseDnsOptions,
  SmtpEvent,
  SmtpListenerOptions,
} from "./listener.js";
export { SmtpServerPatchError } from "./patches.js";
export type { ReverseResolver } from "./reverse-dns.js";
