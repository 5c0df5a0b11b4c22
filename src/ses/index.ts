export {
  HEADERS_LIMIT_BYTES,
  NOTIFICATION_SUBJECT,
  lambdaEvent,
  receivedNotification,
  sesMail,
  sesReceipt,
  sesReceiptAction,
  snsContent,
} from "./events.js";
export type {
  SesAddHeaderReceiptAction,
  SesBounceReceiptAction,
  SesContentEncoding,
  SesLambdaEvent,
  SesLambdaReceiptAction,
  SesMail,
  SesReceipt,
  SesReceiptAction,
  SesS3ReceiptAction,
  SesSnsReceiptAction,
  SesStopReceiptAction,
  SesVerdict,
  SesWorkMailReceiptAction,
} from "./events.js";
export type { VerdictStatus, Verdicts } from "./verdicts.js";
