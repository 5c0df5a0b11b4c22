import { createHash } from "node:crypto";
import type { AddressInfo } from "node:net";
import { SMTPServer } from "smtp-server";
import type { SMTPServerAddress, SMTPServerDataResult } from "smtp-server";

/** One message as the server saw it. */
export interface ReceivedMail {
  /** MAIL FROM address; "" for the null sender. */
  mailFrom: string;
  /** MAIL FROM parameters (keys upper case), e.g. SIZE. */
  mailFromArgs: Record<string, string>;
  rcptTo: string[];
  /** The DATA bytes, dot-unstuffed, up to and including the CRLF before the final ".". */
  data: Buffer;
  sha256: string;
}

export interface TestSmtpServerOptions {
  lmtp?: boolean;
  /** TLS from the start, with smtp-server's built-in self-signed certificate. */
  secure?: boolean;
  /** Accepted user and password; without, no AUTH is offered. */
  auth?: { user: string; pass: string };
  /** An error for the recipient, or undefined to accept it. */
  rcptReply?: (address: string) => SmtpReply | undefined;
  /** Under LMTP, the reply after DATA for one recipient; undefined accepts. */
  lmtpReply?: (address: string) => SmtpReply | undefined;
  /** Sees every DATA chunk as it arrives. */
  onChunk?: (chunk: Buffer) => void;
}

export interface SmtpReply {
  code: number;
  text: string;
}

export interface TestSmtpServer {
  port: number;
  received: ReceivedMail[];
  close(): Promise<void>;
}

function replyError(reply: SmtpReply): Error {
  return Object.assign(new Error(reply.text), { responseCode: reply.code });
}

/** A real SMTP or LMTP server on 127.0.0.1 and an ephemeral port, recording what it receives. */
export async function startSmtpServer(options: TestSmtpServerOptions = {}): Promise<TestSmtpServer> {
  const received: ReceivedMail[] = [];
  const server = new SMTPServer({
    lmtp: options.lmtp ?? false,
    secure: options.secure ?? false,
    logger: false,
    // Advertises SIZE, so that clients declare the message size on MAIL FROM.
    size: 64 * 1024 * 1024,
    // Plain text unless asked: a STARTTLS offer would make the client verify the self-signed certificate.
    disabledCommands: options.auth ? ["STARTTLS"] : ["STARTTLS", "AUTH"],
    allowInsecureAuth: true,
    authOptional: true,
    onAuth(auth, _session, callback) {
      if (auth.username === options.auth?.user && auth.password === options.auth?.pass) {
        callback(null, { user: auth.username });
      } else {
        callback(replyError({ code: 535, text: "5.7.8 Authentication credentials invalid" }));
      }
    },
    onRcptTo(address: SMTPServerAddress, _session, callback) {
      const reply = options.rcptReply?.(address.address);
      callback(reply ? replyError(reply) : null);
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: Buffer) => {
        options.onChunk?.(chunk);
        chunks.push(chunk);
      });
      stream.on("end", () => {
        const data = Buffer.concat(chunks);
        const { mailFrom, rcptTo } = session.envelope;
        const args = mailFrom ? mailFrom.args : false;
        received.push({
          mailFrom: mailFrom ? mailFrom.address : "",
          mailFromArgs: args ? Object.fromEntries(Object.entries(args).map(([k, v]) => [k, String(v)])) : {},
          rcptTo: rcptTo.map((r) => r.address),
          data,
          sha256: createHash("sha256").update(data).digest("hex"),
        });
        if (options.lmtp && options.lmtpReply) {
          const replies: SMTPServerDataResult[] = rcptTo.map((r) => {
            const reply = options.lmtpReply?.(r.address);
            return reply ? replyError(reply) : "2.0.0 Ok: delivered";
          });
          callback(null, replies);
        } else {
          callback(null, "2.0.0 Ok: queued");
        }
      });
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.server.address() as AddressInfo;
  return {
    port,
    received,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
