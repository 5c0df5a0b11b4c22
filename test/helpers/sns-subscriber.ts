import { createServer } from "node:http";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";

/** An SNS HTTP(S) subscriber on 127.0.0.1 that keeps the envelopes posted to it; `servers` collects it for closing. */
export async function startSubscriber(servers: Server[]): Promise<{ url: string; envelopes: Record<string, string>[] }> {
  const envelopes: Record<string, string>[] = [];
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      envelopes.push(JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, string>);
      response.writeHead(200).end();
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/sns`, envelopes };
}

/** AWS's documented string to sign for a Notification envelope (written here from the docs, not from our code). */
export function awsStringToSign(envelope: Record<string, string>): string {
  return ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    .filter((key) => key in envelope)
    .map((key) => `${key}\n${envelope[key]}\n`)
    .join("");
}
