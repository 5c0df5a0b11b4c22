import type { ReceiptdConfig } from "./schema.js";

/**
 * Where SNS subscribers reach the admin port: `admin.url`, else http://host:port, with the
 * daemon's hostname for a wildcard host; `port` is the bound one when the configured is 0.
 */
export function adminPublicUrl(config: Pick<ReceiptdConfig, "hostname" | "serve">, port?: number): string | null {
  const { admin } = config.serve;
  if (!admin) return null;
  if (admin.url) return admin.url;
  const host = admin.host === "0.0.0.0" || admin.host === "::" ? config.hostname : admin.host;
  return `http://${host.includes(":") ? `[${host}]` : host}:${port ?? admin.port}`;
}
