import type { EngineAddress, Scanner } from "./scanner.js";
import { addressText, exchange, send } from "./socket.js";

/** clamd's INSTREAM chunks: a 4-byte length, then the bytes; StreamMaxLength bounds their sum. */
const CHUNK_BYTES = 64 * 1024;

/**
 * ClamAV's clamd, over its documented protocol (no maintained Node client fits: the npm ones
 * buffer the message or shell out): `zINSTREAM`, the message in length-prefixed chunks from the
 * spool file, a zero length, and one answer line: `stream: OK`, `stream: <name> FOUND`, or
 * `INSTREAM size limit exceeded. ERROR` when the message is over clamd's StreamMaxLength.
 */
export function clamdScanner(address: EngineAddress): Scanner {
  return {
    engine: "clamd",
    kind: "virus",
    where: addressText(address),
    async ping(signal) {
      const answer = (await exchange(address, signal, (socket) => send(socket, "zPING\0"))).toString("utf8").replace(/\0$/, "");
      if (answer !== "PONG") throw new Error(`answered ${JSON.stringify(answer.slice(0, 100))} to PING`);
    },
    async scan(message, signal) {
      const answer = await exchange(address, signal, async (socket) => {
        await send(socket, "zINSTREAM\0");
        for await (const piece of message.open()) {
          for (let start = 0; start < piece.length; start += CHUNK_BYTES) {
            const chunk = piece.subarray(start, start + CHUNK_BYTES);
            const length = Buffer.alloc(4);
            length.writeUInt32BE(chunk.length);
            await send(socket, length);
            await send(socket, chunk);
          }
        }
        await send(socket, Buffer.alloc(4));
      });
      const line = answer.toString("utf8").replace(/\0$/, "").trim();
      if (line === "stream: OK") return { verdict: "PASS", detail: "clean" };
      const found = /^stream: (.+) FOUND$/.exec(line);
      if (found) return { verdict: "FAIL", detail: found[1]! };
      // Over StreamMaxLength, clamd has not seen the whole message: it cannot say.
      if (/size limit exceeded/i.test(line)) return { verdict: "GRAY", detail: "over clamd's StreamMaxLength" };
      throw new Error(`unexpected answer ${JSON.stringify(line.slice(0, 200))}`);
    },
  };
}
