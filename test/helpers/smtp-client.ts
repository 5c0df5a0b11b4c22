import net from "node:net";
import tls from "node:tls";

/**
 * A raw SMTP client over a real socket: sends exactly the bytes it is given and reads replies as
 * the server writes them, so tests can pin reply texts and send what no real client would.
 */
export class RawSmtp {
  private buffered = "";
  private replies: string[] = [];
  private waiting: { resolve: (reply: string) => void; reject: (error: Error) => void } | null = null;
  private ended = false;
  private endedPromise: Promise<void>;

  private constructor(private socket: net.Socket | tls.TLSSocket) {
    this.endedPromise = this.watch(socket);
  }

  /** `localAddress` picks the source address: any of 127.0.0.0/8 on Linux, to be several clients. */
  static connect(port: number, host = "127.0.0.1", options: { tls?: boolean; localAddress?: string } = {}): Promise<RawSmtp> {
    const source = options.localAddress ? { localAddress: options.localAddress } : {};
    return new Promise((resolve, reject) => {
      const socket = options.tls
        ? tls.connect({ port, host, rejectUnauthorized: false, ...source }, () => resolve(new RawSmtp(socket)))
        : net.connect({ port, host, ...source }, () => resolve(new RawSmtp(socket)));
      socket.once("error", reject);
    });
  }

  private watch(socket: net.Socket | tls.TLSSocket): Promise<void> {
    socket.setEncoding("latin1");
    socket.on("data", (text: string) => {
      this.buffered += text;
      this.parse();
    });
    socket.on("error", () => undefined);
    return new Promise((resolve) => {
      socket.once("close", () => {
        this.ended = true;
        this.waiting?.reject(new Error(`connection closed; unparsed: ${JSON.stringify(this.buffered)}`));
        this.waiting = null;
        resolve();
      });
    });
  }

  private parse(): void {
    for (;;) {
      // A reply ends with a line whose code is followed by a space (or nothing).
      const match = /^((?:\d{3}-[^\r\n]*\r\n)*\d{3}(?: [^\r\n]*)?\r\n)/.exec(this.buffered);
      if (!match?.[1]) return;
      this.buffered = this.buffered.slice(match[1].length);
      this.replies.push(match[1].replace(/\r\n$/, "").replace(/\r\n/g, "\n"));
      if (this.waiting) {
        const waiter = this.waiting;
        this.waiting = null;
        waiter.resolve(this.replies.shift() as string);
      }
    }
  }

  /** The next reply, multi-line replies joined with "\n". */
  reply(timeoutMs = 5_000): Promise<string> {
    const next = this.replies.shift();
    if (next !== undefined) return Promise.resolve(next);
    if (this.ended) return Promise.reject(new Error("connection closed"));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = null;
        reject(new Error(`no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting = {
        resolve: (reply) => {
          clearTimeout(timer);
          resolve(reply);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
    });
  }

  /** Replies already received and not yet read. */
  pendingReplies(): string[] {
    return [...this.replies];
  }

  write(data: string | Buffer): void {
    this.socket.write(typeof data === "string" ? Buffer.from(data, "latin1") : data);
  }

  async command(line: string): Promise<string> {
    this.write(`${line}\r\n`);
    return this.reply();
  }

  /** EHLO, MAIL FROM and RCPT TO, each expected to succeed; DATA expected to answer 354. */
  async transaction(from: string, to: string[], helo = "client.test"): Promise<void> {
    for (const [line, code] of [[`EHLO ${helo}`, "250"], [`MAIL FROM:<${from}>`, "250"], ...to.map((rcpt) => [`RCPT TO:<${rcpt}>`, "250"]), ["DATA", "354"]] as const) {
      const reply = await this.command(line);
      if (!reply.startsWith(code)) throw new Error(`${line}: ${reply}`);
    }
  }

  /** Upgrades after a 220 to STARTTLS, as a client that does not check the certificate. */
  startTls(): Promise<void> {
    const plain = this.socket;
    plain.removeAllListeners("data");
    plain.removeAllListeners("close");
    return new Promise((resolve, reject) => {
      const secure = tls.connect({ socket: plain as net.Socket, rejectUnauthorized: false }, () => {
        this.socket = secure;
        this.endedPromise = this.watch(secure);
        resolve();
      });
      secure.once("error", reject);
    });
  }

  /** Resolves when the server has closed the connection. */
  closed(timeoutMs = 5_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`connection still open after ${timeoutMs} ms`)), timeoutMs);
      void this.endedPromise.then(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  isClosed(): boolean {
    return this.ended;
  }

  destroy(): void {
    this.socket.destroy();
  }
}
