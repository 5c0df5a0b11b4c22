// The latency probe: one SMTP connection from this process that sends messages of the
// workload's size one after another while smtp-source loads the server, and times each one
// from the final "." to the 250. smtp-source reports no latency, and the same probe runs
// against every server, so its figures compare across servers.
import { connect } from "node:net";
import { performance } from "node:perf_hooks";
import { sleep } from "./util.mjs";

export const PROBE_SENDER = "probe@client.example";

/** A message whose body is `bytes` of text in 76-character lines (no line starts with "."). */
export function probeMessage(bytes, recipient) {
  const head =
    `From: <${PROBE_SENDER}>\r\nTo: <${recipient}>\r\nSubject: receiptd SMTP bench probe\r\n` +
    `Date: ${new Date().toUTCString().replace("GMT", "+0000")}\r\nMessage-ID: <probe.${process.pid}.${Date.now()}@client.example>\r\n\r\n`;
  const line = `${"La la la, this is the probe's filler text. ".repeat(2).slice(0, 76)}\r\n`;
  const body = line.repeat(Math.max(1, Math.ceil(bytes / line.length)));
  return Buffer.from(head + body, "latin1");
}

/** A minimal SMTP client: commands without pipelining, replies parsed line by line. */
class SmtpConnection {
  constructor(socket, timeoutMs) {
    this.socket = socket;
    this.timeoutMs = timeoutMs;
    this.buffer = "";
    this.lines = [];
    this.replies = [];
    this.waiting = null;
    this.closed = null;
    socket.setNoDelay(true);
    socket.on("data", (chunk) => this.#onData(chunk));
    socket.on("error", (error) => this.#fail(error));
    socket.on("close", () => this.#fail(new Error("connection closed by the server")));
  }

  #onData(chunk) {
    this.buffer += chunk.toString("latin1");
    let end;
    while ((end = this.buffer.indexOf("\r\n")) >= 0) {
      const line = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      this.lines.push(line);
      // "250-..." continues a multi-line reply; "250 ..." (or a bare "250") ends it.
      if (line.length <= 3 || line[3] === " ") {
        this.replies.push({ code: Number(line.slice(0, 3)), text: this.lines.join("\n") });
        this.lines = [];
      }
    }
    this.#deliver();
  }

  #fail(error) {
    this.closed ??= error;
    this.#deliver();
  }

  #deliver() {
    if (!this.waiting) return;
    const { resolve, reject, timer } = this.waiting;
    if (this.replies.length > 0) {
      this.waiting = null;
      clearTimeout(timer);
      resolve(this.replies.shift());
    } else if (this.closed) {
      this.waiting = null;
      clearTimeout(timer);
      reject(this.closed);
    }
  }

  reply() {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = null;
        reject(new Error(`no reply within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.waiting = { resolve, reject, timer };
      this.#deliver();
    });
  }

  /** Writes and resolves once the bytes have left our buffer for the kernel's. */
  write(data) {
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(this.closed);
      if (this.socket.write(data)) resolve();
      else this.socket.once("drain", resolve);
    });
  }

  async command(line, expected) {
    await this.write(`${line}\r\n`);
    const reply = await this.reply();
    if (Math.floor(reply.code / 100) !== expected) throw new Error(`${line.split(":")[0]} answered ${reply.text}`);
    return reply;
  }

  close() {
    this.socket.destroy();
  }
}

/** Connects and says EHLO; resolves once the server is ready for MAIL FROM. */
export async function openSmtp({ host = "127.0.0.1", port, timeoutMs = 30_000 }) {
  const socket = connect({ host, port });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`cannot connect to ${host}:${port} within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
  const smtp = new SmtpConnection(socket, timeoutMs);
  try {
    const banner = await smtp.reply();
    if (banner.code !== 220) throw new Error(`banner: ${banner.text}`);
    await smtp.command("EHLO probe.client.example", 2);
  } catch (error) {
    smtp.close();
    throw error;
  }
  return smtp;
}

/** One message over an open connection; returns the milliseconds from "." to the 250. */
async function sendOne(smtp, recipient, message) {
  await smtp.command(`MAIL FROM:<${PROBE_SENDER}>`, 2);
  await smtp.command(`RCPT TO:<${recipient}>`, 2);
  await smtp.command("DATA", 3);
  await smtp.write(message);
  const start = performance.now();
  await smtp.write(".\r\n");
  const reply = await smtp.reply();
  const ms = performance.now() - start;
  if (reply.code !== 250) throw new Error(`end of DATA answered ${reply.text}`);
  return ms;
}

/**
 * Sends messages until `isDone()` turns true, `maxSamples` messages have been timed, or the
 * deadline passes; `gapMs` between messages keeps the probe a light extra load rather than
 * one more saturating session. The connection must already be open (see openSmtp), so
 * that connecting is not part of the first figure.
 */
export async function runProbe(smtp, { recipient, message, maxSamples, gapMs, deadlineMs, isDone }) {
  const latencies = [];
  const errors = [];
  const deadline = performance.now() + deadlineMs;
  while (!isDone() && latencies.length < maxSamples && errors.length < 5 && performance.now() < deadline) {
    try {
      latencies.push(await sendOne(smtp, recipient, message));
    } catch (error) {
      errors.push(error.message);
      if (smtp.closed) break;
      // A refused transaction leaves the session usable after RSET.
      await smtp.command("RSET", 2).catch(() => {});
    }
    if (gapMs > 0) await sleep(gapMs);
  }
  await smtp.command("QUIT", 2).catch(() => {});
  smtp.close();
  return { latencies, errors };
}

/** Whether something on host:port answers with an SMTP banner (used to wait for a server to start). */
export async function smtpAnswers(port) {
  try {
    const smtp = await openSmtp({ port, timeoutMs: 2000 });
    await smtp.command("QUIT", 2).catch(() => {});
    smtp.close();
    return true;
  } catch {
    return false;
  }
}
