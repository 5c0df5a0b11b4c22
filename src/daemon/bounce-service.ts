import type { SendDsnRequest } from "../actions/backend.js";
import type { BounceService, BouncedMessage } from "../api/operation.js";
import { prependedHeaderBytes } from "../mail/edit.js";
import { isMessageId } from "../mail/message-id.js";
import { SpoolInspector } from "../spool/inspect.js";
import type { Scope } from "../store/store.js";

/**
 * SendBounce's view of this daemon: the messages its spool holds for its own scope (queued,
 * done or dead, until the sweep removes them), and its DSN transport. Another account's message
 * IDs are never found here: the spool receives for one scope.
 */
export function spoolBounceService(options: {
  spoolDir: string;
  scope: Scope;
  hostname: string;
  send: (request: SendDsnRequest) => Promise<unknown>;
}): BounceService {
  const { scope } = options;
  return {
    hostname: options.hostname,
    async findMessage(asked, messageId): Promise<BouncedMessage | null> {
      if (asked.account !== scope.account || asked.region !== scope.region || !isMessageId(messageId)) return null;
      const found = await new SpoolInspector(options.spoolDir).findWithHead(messageId);
      if (!found) return null;
      const { message, head } = found;
      // As actions saw it: added headers, receipt headers, then the header block as received.
      const prepended = message.trace?.prependedHeaders ?? message.state.receiptHeaders ?? [];
      const originalMessageId = head.headers.find((h) => h.name.toLowerCase() === "message-id")?.value.trim();
      return {
        receivedAt: new Date(message.state.receivedAt),
        mailFrom: message.state.envelope.mailFrom,
        recipients: message.state.envelope.recipients,
        headers: Buffer.concat([prependedHeaderBytes(prepended), head.headerBlock]),
        ...(originalMessageId ? { originalMessageId } : {}),
      };
    },
    async send(dsn) {
      await options.send(dsn);
    },
  };
}
