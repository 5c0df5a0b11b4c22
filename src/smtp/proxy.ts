import net from "node:net";
import type { Socket } from "node:net";
import { canonicalIp } from "../rules/filters.js";

/**
 * The PROXY protocol, both versions: haproxy's proxy-protocol.txt. A balancer sends one or the
 * other (haproxy's send-proxy or send-proxy-v2; AWS's Network Load Balancer only v2), and the two
 * cannot be mistaken for each other: v1 starts with "PROXY", v2 with a fixed binary signature.
 */

/** v1 (section 2.1): the longest header line is 107 bytes. */
export const MAX_PROXY_HEADER_BYTES = 107;
/** v2 (section 2.2): 12 bytes of signature, then version and command, family, and the length of what follows. */
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V2_FIXED_BYTES = 16;

/**
 * The client a load balancer forwards, its address in canonical form (`canonicalIp`: an
 * IPv4-mapped source in any notation is the IPv4 address), or null for `PROXY UNKNOWN` (use the
 * connection's own peer).
 */
export type ProxiedClient = { ip: string; port: number } | null;

export class ProxyHeaderError extends Error {}

const PORT = /^(0|[1-9]\d{0,4})$/;

/** Parses one v1 header line, CRLF included. */
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
  return { ip: canonicalIp(source), port: Number(sourcePort) };
}

/**
 * Parses one whole v2 header: `header` is the 16 fixed bytes and the length they announce.
 * Address families other than TCP over IPv4 or IPv6 carry no client to use (LOCAL, for the
 * balancer's own health checks; UNSPEC; UNIX sockets), and give null as v1's UNKNOWN does.
 * Whatever follows the addresses (TLVs: AWS's VPC endpoint ID, haproxy's TLS details) is skipped.
 */
export function parseProxyV2Header(header: Buffer): ProxiedClient {
  if (header.length < V2_FIXED_BYTES || !header.subarray(0, V2_SIGNATURE.length).equals(V2_SIGNATURE)) {
    throw new ProxyHeaderError("not a PROXY v2 header");
  }
  const versionAndCommand = header[12]!;
  const familyAndTransport = header[13]!;
  const length = header.readUInt16BE(14);
  if (header.length !== V2_FIXED_BYTES + length) throw new ProxyHeaderError("PROXY v2 header length does not match");
  if (versionAndCommand >> 4 !== 2) throw new ProxyHeaderError(`PROXY v2 header with version ${versionAndCommand >> 4}`);
  const command = versionAndCommand & 0x0f;
  if (command === 0x0) return null;
  if (command !== 0x1) throw new ProxyHeaderError(`PROXY v2 header with unknown command ${command}`);
  const family = familyAndTransport >> 4;
  const transport = familyAndTransport & 0x0f;
  if (family === 0x0 || family === 0x3) return null;
  if (transport !== 0x1) throw new ProxyHeaderError(`PROXY v2 header for transport ${transport}, not TCP`);
  const addresses = header.subarray(V2_FIXED_BYTES);
  if (family === 0x1) {
    if (addresses.length < 12) throw new ProxyHeaderError("PROXY v2 TCP4 header too short for its addresses");
    return { ip: [...addresses.subarray(0, 4)].join("."), port: addresses.readUInt16BE(8) };
  }
  if (family === 0x2) {
    if (addresses.length < 36) throw new ProxyHeaderError("PROXY v2 TCP6 header too short for its addresses");
    const groups = Array.from({ length: 8 }, (_, i) => addresses.readUInt16BE(i * 2).toString(16));
    return { ip: canonicalIp(groups.join(":")), port: addresses.readUInt16BE(32) };
  }
  throw new ProxyHeaderError(`PROXY v2 header with unknown address family ${family}`);
}

/**
 * Reads the header (either version) a load balancer sends before anything else, leaving every byte after it
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
      if (received[0] === V2_SIGNATURE[0]) return onVersion2();
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
    const onVersion2 = (): void => {
      const known = Math.min(received.length, V2_SIGNATURE.length);
      if (!received.subarray(0, known).equals(V2_SIGNATURE.subarray(0, known))) {
        return finish(new ProxyHeaderError("neither a PROXY v1 nor a PROXY v2 header"));
      }
      if (received.length < V2_FIXED_BYTES) return;
      const end = V2_FIXED_BYTES + received.readUInt16BE(14);
      if (received.length < end) return;
      try {
        finish(null, parseProxyV2Header(received.subarray(0, end)), received.subarray(end));
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
