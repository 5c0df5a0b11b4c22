import type { SMTPServer } from "smtp-server";
import { SMTPConnection } from "smtp-server/lib/smtp-connection.js";

/**
 * What our servers change in smtp-server's per-connection behaviour. The patched methods look
 * their server up here and behave exactly as the library does for any other server (test
 * helpers and transports run smtp-server in the same process).
 */
export interface ConnectionTweaks {
  /**
   * smtp-server holds every greeting back 100 ms to catch clients that talk first. At a high
   * connection rate that pause caps throughput, so it is opt-in here: 0 greets at once.
   */
  earlyTalkerCheckMs: number;
  /** Reply to a declared SIZE over the limit; smtp-server's own names the limit in other words. */
  declaredSizeRefusal: { code: number; message: string };
  onDeclaredSizeRefused(connection: SMTPConnection, mailFrom: string): void;
  /**
   * Reply to a PROXY header from a peer that may not send one, and the session ends. Without it
   * smtp-server answers "command not recognized" and carries on with the session.
   */
  proxyRefusal: { code: number; message: string };
  onProxyRefused(connection: SMTPConnection): void;
}

/** The statement of SMTPConnection.prototype.init that the init patch replaces. */
export const GREETING_PAUSE_SOURCE = "setTimeout(() => this.connectionReady(), 100)";

type CommandHandler = (this: SMTPConnection, command: Buffer, callback: () => void) => void;
type ParsedAddress = Parameters<SMTPConnection["_validateMailParams"]>[0];

interface PatchableConnection {
  init(this: SMTPConnection): void;
  _validateMailParams(this: SMTPConnection, parsed: ParsedAddress): ReturnType<SMTPConnection["_validateMailParams"]>;
  _getHandler(this: SMTPConnection, command: string): CommandHandler | undefined;
}

const tweaks = new WeakMap<SMTPServer, ConnectionTweaks>();
const patched = new WeakSet<object>();

export class SmtpServerPatchError extends Error {
  constructor(what: string) {
    super(
      `smtp-server no longer looks as src/smtp/patches.ts expects (${what}); ` +
        "check the patches against the installed smtp-server before using this version",
    );
  }
}

/**
 * Checks that each patched method still does what the patch assumes, before changing anything:
 * a library upgrade must fail loudly at start-up, never quietly bring the pause back or let
 * smtp-server's own wording through.
 */
function verify(proto: PatchableConnection): void {
  // The replacement keeps the original's other step, wiring the socket up through _setListeners.
  for (const statement of [GREETING_PAUSE_SOURCE, "this._setListeners("]) {
    if (typeof proto.init !== "function" || !proto.init.toString().includes(statement)) {
      throw new SmtpServerPatchError(`SMTPConnection.init does not contain "${statement}"`);
    }
  }
  const probe = { handler_PROBE: () => undefined } as unknown as SMTPConnection;
  if (typeof proto._getHandler !== "function" || proto._getHandler.call(probe, "PROBE") === undefined) {
    throw new SmtpServerPatchError("SMTPConnection._getHandler does not find handler_<COMMAND> methods");
  }
  const over = { _server: { options: { size: 10 } }, secure: false } as unknown as SMTPConnection;
  let sizeCheck: ReturnType<SMTPConnection["_validateMailParams"]> | undefined;
  try {
    sizeCheck = proto._validateMailParams.call(over, { address: "a@example.com", args: { SIZE: "11" } });
  } catch {
    // A reworked method may trip over the minimal probe connection: reported below like any change.
  }
  if (sizeCheck?.code !== 552) {
    throw new SmtpServerPatchError("SMTPConnection._validateMailParams does not refuse a SIZE over the limit with 552");
  }
}

/** Patches SMTPConnection once per process; `proto` is a parameter for the tests of the checks. */
export function patchSmtpConnection(proto: PatchableConnection = SMTPConnection.prototype): void {
  if (patched.has(proto)) return;
  verify(proto);
  const { init, _validateMailParams: validateMailParams } = proto;

  proto.init = function (this: SMTPConnection): void {
    const tweak = tweaks.get(this._server);
    if (!tweak) return init.call(this);
    // The PROXY handler lives on the connection, not the prototype: other servers keep answering 500.
    (this as unknown as Record<string, CommandHandler>).handler_PROXY = function (this: SMTPConnection, _command, callback) {
      tweak.onProxyRefused(this);
      this.send(tweak.proxyRefusal.code, tweak.proxyRefusal.message);
      this.close();
      callback();
    };
    // The original's only other step is smtp-server's maxClients check, an option our servers leave unset.
    this._setListeners(() => {
      if (tweak.earlyTalkerCheckMs > 0) setTimeout(() => this.connectionReady(), tweak.earlyTalkerCheckMs).unref();
      else this.connectionReady();
    });
  };

  proto._validateMailParams = function (this: SMTPConnection, parsed) {
    const error = validateMailParams.call(this, parsed);
    const tweak = tweaks.get(this._server);
    if (!tweak || error?.code !== 552) return error;
    tweak.onDeclaredSizeRefused(this, parsed.address);
    // Without an enhanced code smtp-server sends the message as it is, after the reply code.
    return { code: tweak.declaredSizeRefusal.code, message: tweak.declaredSizeRefusal.message, enhancedCode: null };
  };

  patched.add(proto);
}

export function tweakServer(server: SMTPServer, tweak: ConnectionTweaks): void {
  patchSmtpConnection();
  tweaks.set(server, tweak);
}
