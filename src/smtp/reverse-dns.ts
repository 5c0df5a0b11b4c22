import { Resolver } from "node:dns/promises";

export const DEFAULT_REVERSE_DNS_TIMEOUT_MS = 1_000;

/** PTR names of an address; rejects when there are none or DNS fails. */
export type ReverseResolver = (ip: string) => Promise<string[]>;

export function systemReverseResolver(timeoutMs: number): ReverseResolver {
  // One try: the caller gives up after timeoutMs anyway, and retries would only keep sockets busy.
  const resolver = new Resolver({ timeout: timeoutMs, tries: 1 });
  return (ip) => resolver.reverse(ip);
}

// RFC 1035 labels, plus the underscore some providers publish in PTR records.
const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

/**
 * A PTR record says whatever the owner of the address likes, CR and LF included, and the name
 * goes into the Received header: only something shaped like a host name is used.
 */
export function usableHostname(name: string): string | null {
  const host = name.toLowerCase().replace(/\.$/, "");
  if (host.length === 0 || host.length > 253) return null;
  return host.split(".").every((label) => LABEL.test(label)) ? host : null;
}

/** The first usable PTR name, or null when there is none, DNS fails, or it takes longer than timeoutMs. */
export async function reverseLookup(resolve: ReverseResolver, ip: string, timeoutMs: number): Promise<string | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<null>((done) => {
    timer = setTimeout(() => done(null), timeoutMs);
    timer.unref();
  });
  const lookup = resolve(ip).then(
    (names) => names.map(usableHostname).find((name) => name !== null) ?? null,
    () => null,
  );
  try {
    return await Promise.race([lookup, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
