import net from "node:net";
import type { Socket } from "node:net";

/** PROXY protocol v1 (haproxy's proxy-protocol.txt, section 2.1): the longest header line is 107 bytes. */
export const MAX_PROXY_HEADER_BYTES = 107;

/** The client a load balancer forwards, or null for `PROXY UNKNOWN` (use the connection's own peer). */
export type ProxiedClient = { ip: string; port: number } | null;

export class ProxyHeaderError extends Error {}

const PORT = /^(0|[1-9]\d{0,4})$/;

/** Parses one header line, CRLF included. */
export function parseProxyHeader(line: string): ProxiedClient {
  if (!line.endsWith("\r\n")) throw new ProxyHeaderError("PROXY header does not end in CRLF");
  const fields = line.slice(0, -2).split(" ");
  if (fields[0] !== "PROXY") throw new ProxyHeaderError("not a PROXY v1 header");
  // The specification tells receivers to ignore whatever follows UNKNOWN.
  if (fields[1] === "UNKNOWN") return null;
  if (fields.length !== 6) throw new ProxyHeaderError("PROXY header needs 6 fields");
  const [, family, source, destination, sourcePort, destinationPort] = fields as [string, string, string, string, string, string];
  const version = family === "TCP4" ? 4 : family === "TCP6" ? 6 : 0;
  if (version === 0) throw new ProxyHeaderError(`unknown PROXY protocol family ${JSON.stringify(family)}`);
  if (net.isIP(source) !== version || net.isIP(destination) !== version) {
    throw new ProxyHeaderError(`PROXY ${family} header with an invalid address`);
  }
  for (const port of [sourcePort, destinationPort]) {
    if (!PORT.test(port) || Number(port) > 65535) throw new ProxyHeaderError(`PROXY header with an invalid port ${JSON.stringify(port)}`);
  }
  return { ip: source, port: Number(sourcePort) };
}

/**
 * Reads the header a load balancer sends before anything else, leaving every byte after it
 * (SMTP commands, a TLS ClientHello) unread in the socket for whoever reads next.
 */
export function readProxyHeader(socket: Socket, timeoutMs: number): Promise<ProxiedClient> {
  return new Promise((resolve, reject) => {
    let received = Buffer.alloc(0);
    const finish = (error: Error | null, client?: ProxiedClient, rest?: Buffer): void => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("close", onEnd);
      socket.off("error", onError);
      socket.pause();
      if (error) return reject(error);
      if (rest && rest.length > 0) socket.unshift(rest);
      resolve(client ?? null);
    };
    const onData = (chunk: Buffer): void => {
      received = Buffer.concat([received, chunk]);
      const lf = received.indexOf(0x0a);
      if (lf === -1) {
        if (received.length >= MAX_PROXY_HEADER_BYTES) finish(new ProxyHeaderError("PROXY header too long"));
        return;
      }
      if (lf + 1 > MAX_PROXY_HEADER_BYTES) return finish(new ProxyHeaderError("PROXY header too long"));
      try {
        finish(null, parseProxyHeader(received.subarray(0, lf + 1).toString("latin1")), received.subarray(lf + 1));
      } catch (error) {
        finish(error as Error);
      }
    };
    const onEnd = (): void => finish(new ProxyHeaderError("connection closed before the PROXY header"));
    const onError = (error: Error): void => finish(error);
    const timer = setTimeout(() => finish(new ProxyHeaderError("no PROXY header in time")), timeoutMs);
    socket.on("data", onData);
    socket.on("end", onEnd);
    socket.on("close", onEnd);
    socket.on("error", onError);
  });
}
