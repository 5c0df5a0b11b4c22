import { connect } from "node:net";
import type { Socket } from "node:net";
import type { EngineAddress } from "./scanner.js";

/**
 * One request to an engine over TCP or a Unix socket: `write` sends the request (awaiting the
 * socket's drain, so a large message streams without being held), and the whole answer is
 * what the engine wrote until it closed. The signal destroys the socket.
 */
export function exchange(address: EngineAddress, signal: AbortSignal, write: (socket: Socket) => Promise<void>): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = "path" in address ? connect(address.path) : connect(address.port, address.host);
    const chunks: Buffer[] = [];
    const abort = () => socket.destroy(new Error("aborted"));
    signal.addEventListener("abort", abort, { once: true });
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("error", (error) => {
      signal.removeEventListener("abort", abort);
      reject(error);
    });
    socket.on("end", () => {
      signal.removeEventListener("abort", abort);
      resolve(Buffer.concat(chunks));
    });
    socket.once("connect", () => {
      write(socket).then(
        () => undefined,
        (error: unknown) => socket.destroy(error as Error),
      );
    });
  });
}

/** Writes, waiting for the socket to drain when it asks to. */
export function send(socket: Socket, bytes: Buffer | string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (socket.destroyed) return reject(new Error("the engine closed the connection"));
    if (socket.write(bytes)) return resolve();
    socket.once("drain", resolve);
    socket.once("close", () => reject(new Error("the engine closed the connection")));
  });
}

/** An address as logs and /readyz name it. */
export function addressText(address: EngineAddress): string {
  return "path" in address ? address.path : `${address.host}:${address.port}`;
}
