import type { ReceiptdConfig } from "./schema.js";

/**
 * Where SNS subscribers reach the admin port: `admin.url`, else http://host:port, with the
 * daemon's hostname for a wildcard host; `port` is the bound one when the configured is 0.
 */
export function adminPublicUrl(config: Pick<ReceiptdConfig, "hostname" | "serve">, port?: number): string | null {
  const { admin } = config.serve;
  if (!admin) return null;
  return admin.url ?? listenerUrl(admin.host, port ?? admin.port, config.hostname);
}

/** `http://host:port` of a listener, with `hostname` for a wildcard host (no address to link to). */
export function listenerUrl(host: string, port: number, hostname: string): string {
  const named = host === "0.0.0.0" || host === "::" ? hostname : host;
  return `http://${named.includes(":") ? `[${named}]` : named}:${port}`;
}
