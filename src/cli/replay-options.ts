import { stat } from "node:fs/promises";
import { isIP } from "node:net";
import { join } from "node:path";
import { SpoolInspector } from "../spool/inspect.js";
import type { SpooledMessage } from "../spool/inspect.js";
import type { ReplaySettings } from "../replay/replay.js";
import type { RuleSet } from "../rules/model.js";
import { UsageError, parseTimeOption } from "./usage.js";

/** The options that say how a message arrived, shared by `replay` and `diff`. */
export const ARRIVAL_OPTIONS = {
  filters: { type: "string" },
  identity: { type: "string", multiple: true },
  from: { type: "string" },
  to: { type: "string", multiple: true },
  "client-ip": { type: "string" },
  helo: { type: "string" },
  tls: { type: "boolean" },
  "lambda-result": { type: "string", multiple: true },
} as const;

export interface ArrivalValues {
  from?: string | undefined;
  to?: string[] | undefined;
  "client-ip"?: string | undefined;
  helo?: string | undefined;
  tls?: boolean | undefined;
  "lambda-result"?: string[] | undefined;
}

export type Arrival = Pick<ReplaySettings, "tls" | "mailFrom" | "recipients" | "clientIp" | "helo"> & {
  lambdaResults: Map<string, string>;
};

/** The arrival options, checked: what both rule sets of a diff see alike. */
export function parseArrival(values: ArrivalValues, help: string): Arrival {
  const clientIp = values["client-ip"];
  if (clientIp !== undefined && isIP(clientIp) === 0) throw new UsageError(`--client-ip "${clientIp}" is not an IP address`, help);
  return {
    tls: values.tls ?? false,
    lambdaResults: parseLambdaResults(values["lambda-result"] ?? [], help),
    ...(values.from === undefined ? {} : { mailFrom: values.from }),
    ...(values.to === undefined ? {} : { recipients: values.to }),
    ...(clientIp === undefined ? {} : { clientIp }),
    ...(values.helo === undefined ? {} : { helo: values.helo }),
  };
}

function parseLambdaResults(entries: readonly string[], help: string): Map<string, string> {
  const results = new Map<string, string>();
  for (const entry of entries) {
    const eq = entry.lastIndexOf("=");
    if (eq <= 0 || eq === entry.length - 1) {
      throw new UsageError(`--lambda-result "${entry}": expected <functionArn>=<disposition>`, help);
    }
    results.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  return results;
}

/**
 * A result is used only for a RequestResponse invocation (an Event one's never is, as on SES):
 * any other function is a typo or a mistake that would silently change nothing. For a diff, a
 * function called by either rule set counts.
 */
export function checkLambdaResults(results: ReadonlyMap<string, string>, ruleSets: readonly RuleSet[], command: string): void {
  const answering = new Set(
    ruleSets.flatMap((ruleSet) =>
      ruleSet.rules.flatMap((rule) =>
        rule.actions.flatMap((action) =>
          action.type === "Lambda" && action.params.InvocationType === "RequestResponse" ? [action.params.FunctionArn ?? ""] : [],
        ),
      ),
    ),
  );
  const names = ruleSets.map((ruleSet) => `"${ruleSet.name}"`).join(" or ");
  for (const functionArn of results.keys()) {
    if (answering.has(functionArn)) continue;
    const list = answering.size === 0 ? " none" : [...answering].map((arn) => `\n  ${arn}`).join("");
    throw new UsageError(
      `--lambda-result "${functionArn}": no RequestResponse Lambda action of rule set ${names} calls that function ` +
        `(an Event invocation's result is never used); the functions whose result counts:${list}`,
      `Run "receiptd help ${command}" for usage.`,
    );
  }
}

/** Progress for long runs, on stderr and only when a person is watching it. */
export function progressMeter(verb: string): { tick(): void; done(): void } {
  if (!process.stderr.isTTY) return { tick() {}, done() {} };
  let count = 0;
  let last = 0;
  return {
    tick() {
      count++;
      const now = Date.now();
      if (now - last < 200) return;
      last = now;
      process.stderr.write(`\r${verb} ${count} message(s)...`);
    },
    done() {
      if (last > 0) process.stderr.write("\r\x1b[K");
    },
  };
}

export const SILENT_PROGRESS = { tick() {}, done() {} };

/** The options that replay past mail from a spool instead of files, shared by `replay` and `diff`. */
export const SPOOL_OPTIONS = {
  spool: { type: "string" },
  since: { type: "string" },
} as const;

const AS_RECEIVED = ["from", "to", "client-ip", "helo", "tls"] as const;

/**
 * The spool's messages received since `--since` (all without it), oldest first: `--spool` names
 * the spool directory or the data directory that holds one. Null without `--spool`. The
 * arrival options do not go with it: the spool has each message's envelope as it was received.
 */
export async function spoolMessages(
  values: { spool?: string | undefined; since?: string | undefined } & ArrivalValues,
  help: string,
): Promise<SpooledMessage[] | null> {
  if (values.spool === undefined) {
    if (values.since !== undefined) throw new UsageError("--since goes with --spool", help);
    return null;
  }
  const given = AS_RECEIVED.filter((option) => values[option] !== undefined);
  if (given.length > 0) throw new UsageError(`--${given[0]} does not go with --spool: each message keeps the envelope, client and TLS it was received with`, help);
  const since = values.since === undefined ? null : parseTimeOption("since", values.since, help);
  const isSpool = async (dir: string) => (await stat(join(dir, "queue")).catch(() => null))?.isDirectory() === true;
  const dir = (await isSpool(values.spool)) ? values.spool : (await isSpool(join(values.spool, "spool"))) ? join(values.spool, "spool") : null;
  if (dir === null) throw new UsageError(`--spool "${values.spool}": neither a spool directory nor a data directory with spool/ in it`, help);
  const messages = await new SpoolInspector(dir).list();
  return messages.filter((message) => since === null || Date.parse(message.state.receivedAt) >= since).reverse();
}
