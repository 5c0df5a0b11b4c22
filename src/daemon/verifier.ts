import { Resolver } from "node:dns/promises";
import type { Logger } from "../ops/log.js";
import { CONFIRMATION_MS, afterFindings, awaitingDns } from "../store/identity.js";
import type { Finding, Findings } from "../store/identity.js";
import type { IdentityRecord, Scope, ScopeState, StateStore } from "../store/store.js";

/** The three lookups DNS verification makes; node:dns's Resolver in production. */
export interface DnsLookups {
  resolveTxt(name: string): Promise<string[][]>;
  resolveCname(name: string): Promise<string[]>;
  resolveMx(name: string): Promise<{ exchange: string; priority: number }[]>;
}

/** The system's resolvers, or the given servers (`ip` or `ip:port`). */
export function systemDns(servers: readonly string[] | undefined, timeoutMs: number): DnsLookups {
  const resolver = new Resolver({ timeout: timeoutMs, tries: 2 });
  if (servers && servers.length > 0) resolver.setServers([...servers]);
  return resolver;
}

/** No such name, or no record of the type: not there (yet). Anything else: DNS did not answer. */
const ABSENT = new Set(["ENOTFOUND", "ENODATA"]);

async function find(lookup: () => Promise<boolean>): Promise<Finding> {
  try {
    return (await lookup()) ? "found" : "missing";
  } catch (error) {
    return ABSENT.has((error as NodeJS.ErrnoException).code ?? "") ? "missing" : "error";
  }
}

const host = (name: string) => name.toLowerCase().replace(/\.$/, "");

/**
 * What SES looks for (reference §2.2): the token in `_amazonses.<domain>` TXT; each DKIM token's
 * `<token>._domainkey.<domain>` CNAME to `<token>.dkim.amazonses.com`; an MX of the MAIL FROM
 * domain pointing at SES's feedback host for the region, or at this MX itself.
 */
async function lookUp(record: IdentityRecord, dns: DnsLookups, scope: Scope, hostname: string): Promise<Findings> {
  const waiting = awaitingDns(record);
  const findings: Findings = {};
  if (waiting.identity) {
    const token = record.verification.token;
    findings.identity = await find(async () => (await dns.resolveTxt(`_amazonses.${record.identity}`)).some((chunks) => chunks.join("") === token));
  }
  if (waiting.dkim) {
    const each = await Promise.all(
      record.dkim.tokens.map((token) =>
        find(async () => (await dns.resolveCname(`${token}._domainkey.${record.identity}`)).some((name) => host(name) === `${token}.dkim.amazonses.com`)),
      ),
    );
    findings.dkim = each.includes("error") ? "error" : each.every((finding) => finding === "found") ? "found" : "missing";
  }
  if (waiting.mailFrom && record.mailFrom.domain !== undefined) {
    const targets = new Set([`feedback-smtp.${scope.region}.amazonses.com`, host(hostname)]);
    findings.mailFrom = await find(async () => (await dns.resolveMx(record.mailFrom.domain!)).some((mx) => targets.has(host(mx.exchange))));
  }
  return findings;
}

const isWaiting = (record: IdentityRecord) => {
  const waiting = awaitingDns(record);
  return waiting.identity || waiting.dkim || waiting.mailFrom || (record.type === "EmailAddress" && record.verification.status === "Pending");
};

export interface Verifier {
  /** One pass over every scope's waiting identities; resolves when their changes are durable. */
  checkNow(): Promise<void>;
  close(): void;
}

/**
 * DNS verification (`state.verification: dns`): every `intervalMs`, each identity waiting for
 * DNS in any scope of the store is looked up, and a status that changes is written through the
 * store (audit origin `verifier`), so the MX follows it like any other change.
 */
export function startVerifier(options: {
  store: StateStore;
  dns: DnsLookups;
  hostname: string;
  intervalMs: number;
  timeoutHours: number;
  clock: () => Date;
  logger: Logger;
}): Verifier {
  const { store, dns, logger } = options;
  const limits = { timeoutMs: options.timeoutHours * 60 * 60 * 1000, confirmationMs: CONFIRMATION_MS };

  const checkScope = async (scope: Scope, state: ScopeState) => {
    for (const record of [...state.identities.values()].filter(isWaiting)) {
      const findings = await lookUp(record, dns, scope, options.hostname);
      const now = options.clock();
      if (afterFindings(record, findings, now, limits) === record) continue;
      // Applied to the newest record: the identity may have changed (or gone) during the lookups.
      const changed = await store.update(scope, { via: "verifier", operation: "VerifyIdentity", target: { Identity: record.identity } }, (current) => {
        const latest = current.identities.get(record.identity);
        const next = latest && afterFindings(latest, findings, now, limits);
        if (!latest || !next || next === latest) return { state: current, result: null };
        return { state: Object.freeze({ ...current, identities: new Map(current.identities).set(record.identity, next) }), result: next };
      });
      if (changed) {
        logger.info("state.verification_changed", {
          account: scope.account,
          region: scope.region,
          identity: record.identity,
          verification: changed.verification.status,
          dkim: changed.dkim.status,
          ...(changed.mailFrom.status ? { mailFrom: changed.mailFrom.status } : {}),
        });
      }
    }
  };

  // One pass at a time; a pass asked for during one runs after it, so it sees what changed meanwhile.
  let last: Promise<void> = Promise.resolve();
  const checkNow = () => {
    last = last.catch(() => undefined).then(async () => {
      for (const scope of await store.scopes()) await checkScope(scope, await store.read(scope));
    });
    return last;
  };
  const timer = setInterval(() => {
    checkNow().catch((error: unknown) => logger.error("state.verification_failed", { error }));
  }, options.intervalMs);
  timer.unref();
  return { checkNow, close: () => clearInterval(timer) };
}
