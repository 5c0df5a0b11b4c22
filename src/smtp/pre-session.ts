import type { Socket } from "node:net";
import tls from "node:tls";
import { canonicalIp, decideIp } from "../rules/filters.js";
import type { CompiledFilters } from "../rules/filters.js";
import { errorText } from "../ops/log.js";
import type { RefusalReason, SmtpEvent } from "./events.js";
import { readProxyHeader } from "./proxy.js";
import type { ProxiedClient } from "./proxy.js";

export interface PreSessionSettings {
  /** Load balancers that must open each connection with a PROXY header; null when there are none. */
  proxyFrom: CompiledFilters | null;
  /** Bounds the PROXY header and the TLS handshake. */
  socketMs: number;
  /** Connections waiting here at most (docs/behaviour.md §4: bounded in all, not per address). */
  maxPending: number;
  /** The context of the implicit-TLS handshake. */
  secureContext(): tls.SecureContext | undefined;
  emit(event: SmtpEvent): void;
  /** A connection was dropped here. */
  onDropped(): void;
}

/** Where a connection that got through goes: its stream (TLS, if implicit), canonical peer, proxied client and balancer. */
export type OpenSession = (stream: Socket, peer: string, client: ProxiedClient, proxiedBy: string | null) => void;

/** Why a connection was dropped before its SMTP session began. */
class EarlyRefusal extends Error {
  constructor(
    readonly reason: RefusalReason,
    cause: unknown,
  ) {
    super(errorText(cause));
  }
}

/** What happens to a connection before its SMTP session: the peer's address, the PROXY header, implicit TLS. */
export class PreSession {
  /** Connections not in an SMTP session yet: reading the PROXY header, or in the TLS handshake. */
  private readonly pending = new Set<Socket>();

  constructor(private readonly settings: PreSessionSettings) {}

  get size(): number {
    return this.pending.size;
  }

  destroyAll(): void {
    for (const socket of this.pending) socket.destroy();
  }

  enter(socket: Socket, implicitTls: boolean, open: OpenSession): void {
    // Errors of a socket that never reaches its session end in 'close'; SMTPConnection adds its own handler.
    socket.on("error", () => undefined);
    // docs/behaviour.md §4: the one place the peer's address enters, the PROXY header's being the other.
    const peer = canonicalIp(socket.remoteAddress ?? "");
    const { proxyFrom, emit } = this.settings;
    const proxied = proxyFrom !== null && decideIp(proxyFrom, peer).decision === "allow";
    if (!proxied && !implicitTls) return open(socket, peer, null, null);
    if (this.pending.size >= this.settings.maxPending) {
      emit({ type: "refused", session: null, ip: peer, reason: "too-many-pending", reply: null });
      socket.destroy();
      return;
    }
    this.pending.add(socket);
    this.prepare(socket, implicitTls, proxied).then(
      ({ stream, client }) => {
        this.pending.delete(socket);
        open(stream, peer, client, proxied ? peer : null);
      },
      (error: EarlyRefusal) => {
        this.pending.delete(socket);
        emit({ type: "refused", session: null, ip: peer, reason: error.reason, reply: null, error: error.message });
        socket.destroy();
        this.settings.onDropped();
      },
    );
  }

  /** The PROXY header, then the TLS handshake of an implicit-TLS listener (a load balancer passes TLS through). */
  private async prepare(socket: Socket, implicitTls: boolean, proxied: boolean): Promise<{ stream: Socket; client: ProxiedClient }> {
    const client = proxied
      ? await readProxyHeader(socket, this.settings.socketMs).catch((error: unknown) =>
          Promise.reject(new EarlyRefusal("proxy-header-invalid", error)),
        )
      : null;
    if (!implicitTls) return { stream: socket, client };
    const stream = await this.handshake(socket).catch((error: unknown) =>
      Promise.reject(new EarlyRefusal("tls-handshake-failed", error)),
    );
    return { stream, client };
  }

  private handshake(socket: Socket): Promise<tls.TLSSocket> {
    return new Promise((resolve, reject) => {
      const secure = new tls.TLSSocket(socket, { isServer: true, secureContext: this.settings.secureContext() });
      const fail = (error?: Error): void => {
        clearTimeout(timer);
        secure.destroy();
        reject(error ?? new Error("connection closed during the TLS handshake"));
      };
      const timer = setTimeout(() => fail(new Error("TLS handshake timed out")), this.settings.socketMs);
      secure.once("error", fail);
      secure.once("close", () => fail());
      secure.once("secure", () => {
        clearTimeout(timer);
        secure.removeAllListeners("error");
        secure.removeAllListeners("close");
        resolve(secure);
      });
    });
  }
}
