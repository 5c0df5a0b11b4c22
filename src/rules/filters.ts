import net from "node:net";
import IPCIDR from "ip-cidr";
import type { IpFilter } from "./model.js";

export interface IpFilterDecision {
  decision: "allow" | "block" | "none";
  /** The filter that decided, or null when none matched. */
  filter: string | null;
}

interface CompiledRange {
  filter: IpFilter;
  v6: boolean;
  start: bigint;
  end: bigint;
}

/** IP filters parsed once, so that a connection costs two comparisons per filter. */
export interface CompiledFilters {
  allow: CompiledRange[];
  block: CompiledRange[];
}

function toRange(filter: IpFilter): CompiledRange {
  const v6 = filter.cidr.includes(":");
  const cidr = filter.cidr.includes("/") ? filter.cidr : `${filter.cidr}/${v6 ? 128 : 32}`;
  const range = new IPCIDR(cidr);
  return {
    filter,
    v6,
    start: BigInt(range.addressStart.bigInteger()),
    end: BigInt(range.addressEnd.bigInteger()),
  };
}

export function compileFilters(filters: readonly IpFilter[]): CompiledFilters {
  const ranges = filters.map(toRange);
  return {
    allow: ranges.filter((range) => range.filter.policy === "Allow"),
    block: ranges.filter((range) => range.filter.policy === "Block"),
  };
}

const OCTET = "(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)";
/**
 * An IPv4 address as sockets report it (no leading zeros). Read here because every connection is
 * checked, and ip-cidr's general parser costs tens of microseconds; anything else goes to it.
 */
const IPV4 = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}$`);
/** An IPv4-mapped address (::ffff:0:0/96) as the WHATWG URL serializer writes it. */
const IPV4_MAPPED = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/;

/**
 * The one text form of a client address (docs/behaviour.md §4): an IPv4-mapped IPv6 address,
 * dotted (`::ffff:203.0.113.5`, a dual-stack socket's form) or hex (`::ffff:cb00:7105`, as a
 * PROXY header may write it), becomes the IPv4 address it is; any other IPv6 address takes its
 * RFC 5952 form, a zone kept. Anything that is not an IPv6 address is returned as it is.
 */
export function canonicalIp(ip: string): string {
  if (!net.isIPv6(ip)) return ip;
  const zoneStart = ip.indexOf("%");
  const zone = zoneStart === -1 ? "" : ip.slice(zoneStart);
  const address = new URL(`http://[${zoneStart === -1 ? ip : ip.slice(0, zoneStart)}]`).hostname.slice(1, -1);
  const mapped = IPV4_MAPPED.exec(address);
  if (!mapped) return address + zone;
  const high = parseInt(mapped[1]!, 16);
  const low = parseInt(mapped[2]!, 16);
  return [high >> 8, high & 0xff, low >> 8, low & 0xff].join(".");
}

/**
 * The listener hands over addresses already in canonical form; other callers (replay) may give
 * any form, so an IPv4 client behind a dual-stack socket still meets filters written for IPv4.
 */
function parseClientIp(ip: string): { v6: boolean; value: bigint } | null {
  const address = ip.includes(":") ? canonicalIp(ip).replace(/%.*$/, "") : ip;
  const v4 = IPV4.exec(address);
  if (v4) return { v6: false, value: BigInt(((Number(v4[1]) * 256 + Number(v4[2])) * 256 + Number(v4[3])) * 256 + Number(v4[4])) };
  if (!IPCIDR.isValidAddress(address)) return null;
  return { v6: address.includes(":"), value: BigInt(IPCIDR.createAddress(address).bigInteger()) };
}

function firstContaining(ranges: CompiledRange[], ip: { v6: boolean; value: bigint }): IpFilter | undefined {
  return ranges.find((range) => range.v6 === ip.v6 && ip.value >= range.start && ip.value <= range.end)?.filter;
}

/**
 * docs/behaviour.md §4: any Allow that matches wins over every Block, whatever the prefix
 * lengths; a Block alone refuses; no match lets the client go on.
 */
export function decideIp(filters: CompiledFilters, clientIp: string): IpFilterDecision {
  if (filters.allow.length === 0 && filters.block.length === 0) return { decision: "none", filter: null };
  const ip = parseClientIp(clientIp);
  if (!ip) return { decision: "none", filter: null };
  const allow = firstContaining(filters.allow, ip);
  if (allow) return { decision: "allow", filter: allow.name };
  const block = firstContaining(filters.block, ip);
  if (block) return { decision: "block", filter: block.name };
  return { decision: "none", filter: null };
}
