import { request } from "node:http";
import type { Scanner } from "./scanner.js";

/**
 * rspamd's HTTP protocol (`POST /checkv2`, the message as the body, streamed with its length):
 * FAIL when the score reaches `required_score`, PASS below. rspamd's own JSON answer, no client
 * library: none is maintained for Node, and the protocol is one request.
 */
export function rspamdScanner(url: string): Scanner {
  const endpoint = new URL("/checkv2", url);
  return {
    engine: "rspamd",
    kind: "spam",
    where: url,
    async ping(signal) {
      const response = await fetch(new URL("/ping", url), { signal });
      const text = (await response.text()).trim();
      if (!response.ok || text !== "pong") throw new Error(`answered ${response.status} ${JSON.stringify(text.slice(0, 100))} to /ping`);
    },
    scan(message, signal) {
      return new Promise((resolve, reject) => {
        const call = request(endpoint, { method: "POST", headers: { "content-length": message.size }, signal }, (response) => {
          const chunks: Buffer[] = [];
          response.on("data", (chunk: Buffer) => chunks.push(chunk));
          response.on("error", reject);
          response.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            if (response.statusCode !== 200) return reject(new Error(`rspamd answered ${response.statusCode}: ${text.slice(0, 200)}`));
            let answer: { score?: unknown; required_score?: unknown; action?: unknown };
            try {
              answer = JSON.parse(text) as typeof answer;
            } catch {
              return reject(new Error(`rspamd's answer is not JSON: ${text.slice(0, 200)}`));
            }
            const { score, required_score: threshold } = answer;
            if (typeof score !== "number" || typeof threshold !== "number") return reject(new Error(`rspamd's answer has no score: ${text.slice(0, 200)}`));
            resolve({ verdict: score >= threshold ? "FAIL" : "PASS", detail: `score ${score} / ${threshold}, action ${String(answer.action)}` });
          });
        });
        call.on("error", reject);
        (async () => {
          for await (const piece of message.open()) {
            if (!call.write(piece)) await new Promise((drained) => call.once("drain", drained));
          }
          call.end();
        })().catch((error: unknown) => call.destroy(error as Error));
      });
    },
  };
}
