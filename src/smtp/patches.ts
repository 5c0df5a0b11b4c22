import { createHash } from "node:crypto";
import { domainToUnicode } from "node:url";
import type { SMTPServer } from "smtp-server";
import { SMTPConnection } from "smtp-server/lib/smtp-connection.js";
import { SMTPStream } from "smtp-server/lib/smtp-stream.js";

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
  _parseAddressCommand(this: SMTPConnection, name: string, command: string): ParsedAddress | false;
  upgrade(this: SMTPConnection, ...args: never[]): void;
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
  if (typeof proto._parseAddressCommand !== "function") {
    throw new SmtpServerPatchError("SMTPConnection._parseAddressCommand, which the address patch wraps, is gone");
  }
  // The input deadlines (openSession in src/smtp/listener.ts) read these two fields.
  for (const statement of ["this._upgrading = true", "this._parser = this._createParser()"]) {
    if (typeof proto.upgrade !== "function" || !proto.upgrade.toString().includes(statement)) {
      throw new SmtpServerPatchError(`SMTPConnection.upgrade does not contain "${statement}"`);
    }
  }
}

/** Patches SMTPConnection once per process; `proto` is a parameter for the tests of the checks. */
export function patchSmtpConnection(proto: PatchableConnection = SMTPConnection.prototype): void {
  if (patched.has(proto)) return;
  verify(proto);
  const { init, _validateMailParams: validateMailParams, _parseAddressCommand: parseAddressCommand } = proto;

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

  proto._parseAddressCommand = function (this: SMTPConnection, name, command) {
    const parsed = parseAddressCommand.call(this, name, command);
    if (!parsed || !tweaks.has(this._server)) return parsed;
    return { ...parsed, address: addressAsSent(parsed.address, command) };
  };

  patched.add(proto);
}

/**
 * smtp-server turns a domain's A-labels (`xn--`) into Unicode. SES reports an address as the
 * client sent it, and a Unicode domain that came as ASCII would pass for one that needs
 * SMTPUTF8, so the domain's spelling in the command is put back whenever it is the same domain.
 */
export function addressAsSent(address: string, command: string): string {
  const at = address.lastIndexOf("@");
  if (at === -1 || !NON_ASCII.test(address.slice(at + 1))) return address;
  const sent = /<([^<>]*)>/.exec(command)?.[1] ?? "";
  const domain = sent.slice(sent.lastIndexOf("@") + 1);
  if (NON_ASCII.test(domain) || !domain.toLowerCase().includes("xn--")) return address;
  return domainToUnicode(domain) === domainToUnicode(address.slice(at + 1)) ? `${address.slice(0, at)}@${domain}` : address;
}

const NON_ASCII = /[^\x00-\x7f]/;

export function tweakServer(server: SMTPServer, tweak: ConnectionTweaks): void {
  patchSmtpConnection();
  patchDataParser();
  tweaks.set(server, tweak);
}

/**
 * SHA-256 of SMTPStream.prototype._feedDataStream's source with comments and whitespace taken
 * out, for smtp-server 3.21.6. The replacement below is a port of exactly that method; any change
 * to it upstream (a fix to how DATA ends, say) must be ported by hand, so it stops start-up.
 */
export const FEED_DATA_STREAM_FINGERPRINT = "3e33ac82183c0997ee82ae09f86282ff44a52df878e15e137db001501588bcf4";

export function sourceFingerprint(method: (...args: never[]) => unknown): string {
  const source = method
    .toString()
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .replace(/\/\/[^\n]*/g, "")
    .replace(/\s+/g, "");
  return createHash("sha256").update(source).digest("hex");
}

type FeedDataStream = SMTPStream["_feedDataStream"];
interface PatchableParser {
  _feedDataStream: FeedDataStream;
  startDataMode(...args: never[]): unknown;
}

const END_SEQUENCE = Buffer.from("\r\n.\r\n");
const DATA_START_END = Buffer.from(".\r\n");
const LF_DOT = Buffer.from("\n.");
const DOT = 0x2e;
const LF = 0x0a;

/**
 * What smtp-server 3.21.6 does with a chunk of DATA, with two costs taken out; every byte, every
 * call on the data stream and every decision is the original's:
 *
 * - The original looks for a dot starting a line with a JavaScript loop over every byte, about
 *   1.4 ms per MB here, the largest single cost of receiving a large message. `indexOf` finds
 *   the same `<LF>.` positions in native code.
 * - The original copies each chunk whole to put the (up to four) bytes it held back from the
 *   previous one in front. When no `<LF>.` touches the seam between the two, the held-back bytes
 *   are simply written first: the original would have written them with this chunk in any case.
 */
function feedDataStream(this: SMTPStream, chunk: Buffer, done: (error?: Error | null) => void): void {
  const dataStream = this._dataStream!;
  const held = this._lastBytes;
  if (held && held.length) {
    this._lastBytes = false;
    if (!this._atDataStart && chunk.length >= 4 && !dotLineAtSeam(held, chunk)) {
      this._countDataBytes(held.length);
      if (dataStream.writable) dataStream.write(held);
    } else {
      chunk = Buffer.concat([held, chunk], held.length + chunk.length);
    }
  }
  let len = chunk.length;
  if (this._atDataStart && len >= 3 && chunk.subarray(0, 3).equals(DATA_START_END)) {
    this._endDataMode(false, chunk.subarray(3), done);
    return;
  }
  if (this._atDataStart && len >= 2 && chunk[0] === DOT && chunk[1] === DOT) {
    chunk = chunk.subarray(1);
    len--;
    this._atDataStart = false;
  }
  // A dot at index i (from 2, as in the original) with an LF before it.
  for (let i = chunk.indexOf(LF_DOT, 1) + 1; i >= 2 && i < len - 2; i = chunk.indexOf(LF_DOT, i) + 1) {
    if (chunk.subarray(i - 2, i + 3).equals(END_SEQUENCE)) {
      const content = chunk.subarray(0, i);
      this._countDataBytes(content.length);
      this._endDataMode(content, chunk.subarray(i + 3), done);
      return;
    }
    if (chunk[i + 1] === DOT) {
      const content = chunk.subarray(0, i);
      this._lastBytes = false;
      this._countDataBytes(content.length);
      if (dataStream.writable) dataStream.write(content);
      const rest = chunk.subarray(i + 1);
      setImmediate(() => this._feedDataStream(rest, done));
      return;
    }
  }
  this._lastBytes = chunk.length < 4 ? chunk : chunk.subarray(chunk.length - 4);
  if (this._lastBytes.length >= chunk.length) return done();
  const content = chunk.subarray(0, chunk.length - this._lastBytes.length);
  this._countDataBytes(content.length);
  if (!dataStream.writable) return done();
  if (dataStream.write(content) || dataStream.destroyed) return done();
  // A stream the application destroys never drains, it only closes.
  const onDrain = (): void => {
    dataStream.removeListener("drain", onDrain);
    dataStream.removeListener("close", onDrain);
    done();
  };
  dataStream.once("drain", onDrain);
  dataStream.once("close", onDrain);
}

/**
 * Whether an `<LF>.` has its dot among the held bytes or the chunk's first two, the places where
 * scanning the chunk alone would miss it or judge it without the bytes before it.
 */
function dotLineAtSeam(held: Buffer, chunk: Buffer): boolean {
  const seam = [...held, chunk[0], chunk[1]];
  for (let i = 1; i < seam.length; i++) if (seam[i] === DOT && seam[i - 1] === LF) return true;
  return false;
}

/** Replaces SMTPStream._feedDataStream once per process; `proto` is a parameter for the tests. */
export function patchDataParser(proto: PatchableParser = SMTPStream.prototype): void {
  if (patched.has(proto)) return;
  if (typeof proto._feedDataStream !== "function" || sourceFingerprint(proto._feedDataStream) !== FEED_DATA_STREAM_FINGERPRINT) {
    throw new SmtpServerPatchError("SMTPStream._feedDataStream is not the method src/smtp/patches.ts ports");
  }
  // The input deadlines tell DATA by this field.
  if (typeof proto.startDataMode !== "function" || !proto.startDataMode.toString().includes("this._dataMode = true")) {
    throw new SmtpServerPatchError('SMTPStream.startDataMode does not contain "this._dataMode = true"');
  }
  proto._feedDataStream = feedDataStream;
  patched.add(proto);
}
