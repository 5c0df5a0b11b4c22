import type { EngineAddress, Scanner } from "./scanner.js";
import { addressText, exchange, send } from "./socket.js";

/**
 * SpamAssassin's spamd over the spamc protocol (SPAMC/1.5, `CHECK`; no maintained Node client:
 * the npm ones are unmaintained or buffer the message): the message streams after a
 * `Content-length` header, and the answer's `Spam: True|False ; <score> / <threshold>` gives
 * FAIL at or above the threshold, PASS below. A message over `maxBytes` is not sent (spamd's
 * own spamc skips those too) and is GRAY.
 */
export function spamdScanner(address: EngineAddress, options: { maxBytes: number }): Scanner {
  return {
    engine: "spamd",
    kind: "spam",
    where: addressText(address),
    async ping(signal) {
      const answer = (await exchange(address, signal, (socket) => send(socket, "PING SPAMC/1.5\r\n\r\n"))).toString("latin1");
      if (!/^SPAMD\/[\d.]+ 0 PONG/.test(answer)) throw new Error(`answered ${JSON.stringify(answer.slice(0, 100))} to PING`);
    },
    async scan(message, signal) {
      if (message.size > options.maxBytes) return { verdict: "GRAY", detail: `over ${options.maxBytes} bytes, not scanned (spamc's limit)` };
      const answer = await exchange(address, signal, async (socket) => {
        await send(socket, `CHECK SPAMC/1.5\r\nContent-length: ${message.size}\r\n\r\n`);
        for await (const piece of message.open()) await send(socket, piece);
        // spamd reads Content-length bytes, then answers and closes.
        socket.end();
      });
      const text = answer.toString("latin1");
      const status = /^SPAMD\/\d+\.\d+ (\d+) (\S+)/.exec(text);
      if (!status) throw new Error(`unexpected answer ${JSON.stringify(text.slice(0, 200))}`);
      if (status[1] !== "0") throw new Error(`spamd answered ${status[1]} ${status[2]}`);
      const spam = /^Spam: (True|False|Yes|No) ; (-?[\d.]+) \/ (-?[\d.]+)/im.exec(text);
      if (!spam) throw new Error(`no Spam header in ${JSON.stringify(text.slice(0, 200))}`);
      const score = Number(spam[2]);
      const threshold = Number(spam[3]);
      return { verdict: score >= threshold ? "FAIL" : "PASS", detail: `score ${score} / ${threshold}` };
    },
  };
}
