import { watch } from "node:fs";
import type { FSWatcher } from "node:fs";
import { stat } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { compileFilters } from "../rules/filters.js";
import type { CompiledFilters } from "../rules/filters.js";
import { readRuleFile } from "../config/rule-files.js";
import { RuleSetValidationError, parseFiltersText, parseRuleSetText } from "../rules/parse.js";
import type { Identities, IpFilter, RuleSet } from "../rules/model.js";
import { identitiesFrom, identitiesOfRules } from "../rules/recipients.js";
import type { Logger } from "./log.js";
import type { Metrics } from "./metrics.js";

export interface LiveSources {
  /** A rule set in the JSON of `aws ses describe-active-receipt-rule-set`. */
  rules: string;
  /** IP filters in the JSON of `aws ses list-receipt-filters`; none when absent. */
  filters?: string;
  /** Verified identities from the configuration; absent or empty: the domains the rule set names. */
  identities?: string[];
}

/** One consistent state: a message accepted under it is evaluated with exactly these parts. */
export interface PolicyVersion {
  /** Null when no rule set is active (store mode): every recipient is refused. */
  readonly ruleSet: RuleSet | null;
  readonly identities: Identities;
  readonly filters: CompiledFilters;
  /** 1 for the state loaded at start, one more for every reload that changed something. */
  readonly generation: number;
}

export interface LivePolicy {
  /** Null when none is active; a watched file always has one. */
  ruleSet(): RuleSet | null;
  identities(): Identities;
  filters(): CompiledFilters;
  generation(): number;
  /** All parts at once, for callers that keep them across an `await`, where a reload may land in between. */
  version(): PolicyVersion;
}

/** The texts a policy version was parsed from, for a process that mirrors the policy (an acceptor). */
export interface PolicyTexts {
  /** Null: no rule set is active (store mode). */
  rules: string | null;
  filters?: string;
  /** Store mode: the verified identities, which then replace configured or implied ones. */
  identities?: string[];
  generation: number;
}

export interface WatchedPolicy extends LivePolicy {
  /** A watched file always has a rule set. */
  ruleSet(): RuleSet;
  version(): PolicyVersion & { readonly ruleSet: RuleSet };
  /** The texts of the state in effect. */
  texts(): PolicyTexts;
  /**
   * Rereads both files (the daemon calls this on SIGHUP). Resolves true when every file is
   * valid and in effect, false when one was refused (the old one stays); never rejects.
   */
  reload(): Promise<boolean>;
  /** Stops watching the files; `reload()` still works. */
  close(): void;
}

export interface WatchPolicyOptions {
  sources: LiveSources;
  logger: Logger;
  metrics?: Pick<Metrics, "configReloads">;
  /** Quiet time after the last change in a watched directory before the files are reread. Default 200 ms. */
  debounceMs?: number;
  /** Called after every change that took effect, with the new state's texts. */
  onChange?: (texts: PolicyTexts) => void;
  /** How often the watched directories are checked for a dead watcher or a replaced directory. Default 5 s. */
  watchCheckMs?: number;
  /**
   * Whether the SMTP listener offers TLS (config.smtp.tls). When false, a rule set with an
   * enabled `TlsPolicy: Require` rule is refused, at start and on reload: its recipients would
   * get 530 from a server that never offered STARTTLS. Default true.
   */
  tlsOffered?: boolean;
}

/** The rule set or filters file was invalid at start; `errors` has one entry per invalid file. */
export class PolicyLoadError extends Error {
  override readonly name = "PolicyLoadError";
  readonly errors: RuleSetValidationError[];

  constructor(errors: RuleSetValidationError[]) {
    super(errors.map((error) => error.message).join("\n"));
    this.errors = errors;
  }
}

type Trigger = "reload" | "watch";

interface Source<T> {
  name: "rules" | "filters";
  path: string;
  parse(text: string, source: string): T;
  /** The text in effect. */
  text: string;
  value: T;
  /** What was last refused (the text, or the read error), so that a watcher does not report the same file again. */
  refused: string | null;
}

type Check<T> =
  | { kind: "same" }
  | { kind: "repeat" }
  | { kind: "new"; text: string; value: T }
  | { kind: "refused"; key: string; error: RuleSetValidationError };

async function readSource(path: string): Promise<{ text: string } | { error: RuleSetValidationError }> {
  try {
    return { text: await readRuleFile(path) };
  } catch (error) {
    if (error instanceof RuleSetValidationError) return { error };
    throw error;
  }
}

/**
 * Parses one file unless its text is what is in effect. Validation errors are refusals;
 * anything else is a bug and throws.
 */
async function check<T>(
  source: Pick<Source<T>, "path" | "parse">,
  current: Source<T> | null,
  quietRepeats: boolean,
): Promise<Check<T>> {
  const read = await readSource(source.path);
  if ("text" in read && current && read.text === current.text) {
    current.refused = null;
    return { kind: "same" };
  }
  const key = "text" in read ? `text:${read.text}` : `error:${read.error.message}`;
  if (quietRepeats && current?.refused === key) return { kind: "repeat" };
  if ("error" in read) return { kind: "refused", key, error: read.error };
  try {
    return { kind: "new", text: read.text, value: source.parse(read.text, source.path) };
  } catch (error) {
    if (error instanceof RuleSetValidationError) return { kind: "refused", key, error };
    throw error;
  }
}

/** A parsed rule set, refused when a rule requires TLS that the listener does not offer. */
function requireTlsOffered(ruleSet: RuleSet, source: string): RuleSet {
  const issues = ruleSet.rules.flatMap((rule, i) =>
    rule.enabled && rule.tlsPolicy === "Require"
      ? [
          {
            path: `Rules[${i}].TlsPolicy`,
            message: `rule "${rule.name}" requires TLS, but no TLS is configured (config.smtp.tls): its recipients would be refused with 530 without ever being offered STARTTLS`,
          },
        ]
      : [],
  );
  if (issues.length > 0) throw new RuleSetValidationError(source, issues);
  return ruleSet;
}

export const NO_FILTERS: CompiledFilters = Object.freeze({ allow: [], block: [] });

export function compile(filters: readonly IpFilter[]): CompiledFilters {
  const compiled = compileFilters(filters);
  Object.freeze(compiled.allow);
  Object.freeze(compiled.block);
  return Object.freeze(compiled);
}

/** The LivePolicy reading of whatever state `current` returns at each call. */
export function viewOf(current: () => PolicyVersion): LivePolicy {
  return {
    ruleSet: () => current().ruleSet,
    identities: () => current().identities,
    filters: () => current().filters,
    generation: () => current().generation,
    version: current,
  };
}

function identitiesResolver(configured: string[] | undefined): { fixed: boolean; of(ruleSet: RuleSet): Identities } {
  const fixed = configured !== undefined && configured.length > 0 ? identitiesFrom(configured) : null;
  return { fixed: fixed !== null, of: (ruleSet) => fixed ?? identitiesOfRules(ruleSet.rules) };
}

/**
 * The policy of another process, kept in step by `update()` with the texts that process loaded
 * and validated: an acceptor process holds one, fed by the daemon's watched policy, so that both
 * evaluate exactly the same files and generation numbers. A text that does not parse here
 * throws, as it cannot have been accepted there; a generation not newer than the one in effect
 * is ignored.
 */
export function mirrorPolicy(
  identities: string[] | undefined,
  texts: PolicyTexts,
): LivePolicy & { /** False when the generation was not newer. */ update(texts: PolicyTexts): boolean } {
  const resolver = identitiesResolver(identities);
  const parse = (next: PolicyTexts): PolicyVersion => {
    const ruleSet = next.rules === null ? null : parseRuleSetText(next.rules, "rules");
    const identities = next.identities ? identitiesFrom(next.identities) : ruleSet ? resolver.of(ruleSet) : identitiesFrom([]);
    return Object.freeze({
      ruleSet,
      identities,
      filters: next.filters === undefined ? NO_FILTERS : compile(parseFiltersText(next.filters, "filters")),
      generation: next.generation,
    });
  };
  let current = parse(texts);
  return {
    ...viewOf(() => current),
    update(next) {
      if (next.generation <= current.generation) return false;
      current = parse(next);
      return true;
    },
  };
}

/**
 * Loads the rule set and filters, then keeps them current: on `reload()` and whenever a file
 * changes. An invalid new file is refused with every issue logged and the old one kept; a valid
 * one replaces the state in one assignment, so readers see the old or the new, never a mix.
 */
export async function watchPolicy(options: WatchPolicyOptions): Promise<WatchedPolicy> {
  const { sources, logger, metrics } = options;
  const debounceMs = options.debounceMs ?? 200;
  const resolver = identitiesResolver(sources.identities);
  const identitiesFor = resolver.of;

  const parseRules =
    options.tlsOffered === false
      ? (text: string, source: string) => requireTlsOffered(parseRuleSetText(text, source), source)
      : parseRuleSetText;
  const rulesSpec = { path: sources.rules, parse: parseRules };
  const filtersSpec = sources.filters === undefined ? null : { path: sources.filters, parse: parseFiltersText };
  const [rulesStart, filtersStart] = await Promise.all([
    check(rulesSpec, null, false),
    filtersSpec ? check(filtersSpec, null, false) : null,
  ]);
  const errors = [rulesStart, filtersStart].flatMap((result) => (result?.kind === "refused" ? [result.error] : []));
  if (errors.length > 0) throw new PolicyLoadError(errors);
  // Without a previous text, check() only answers "new" or "refused", and refusals threw above.
  const rulesLoaded = rulesStart as Extract<Check<RuleSet>, { kind: "new" }>;
  const rules: Source<RuleSet> = {
    name: "rules",
    ...rulesSpec,
    text: rulesLoaded.text,
    value: rulesLoaded.value,
    refused: null,
  };
  let filters: Source<IpFilter[]> | null = null;
  if (filtersSpec && filtersStart?.kind === "new") {
    filters = { name: "filters", ...filtersSpec, text: filtersStart.text, value: filtersStart.value, refused: null };
  }

  let current: PolicyVersion = Object.freeze({
    ruleSet: rules.value,
    identities: identitiesFor(rules.value),
    filters: filters ? compile(filters.value) : NO_FILTERS,
    generation: 1,
  }) as PolicyVersion;

  const describe = (version: PolicyVersion) => ({
    generation: version.generation,
    ruleSet: version.ruleSet?.name ?? null,
    rules: version.ruleSet?.rules.length ?? 0,
    filters: version.filters.allow.length + version.filters.block.length,
    identities: resolver.fixed ? "configured" : "from rules",
  });
  logger.info("config.loaded", { rulesFile: rules.path, filtersFile: filters?.path, ...describe(current) });

  function apply<T>(source: Source<T>, result: Check<T> | null, trigger: Trigger): "changed" | "refused" | "none" {
    if (result?.kind === "refused") {
      source.refused = result.key;
      logger.error("config.reload_refused", {
        trigger,
        file: source.path,
        keptGeneration: current.generation,
        issues: result.error.issues,
      });
      return "refused";
    }
    if (result?.kind !== "new") return "none";
    source.text = result.text;
    source.value = result.value;
    source.refused = null;
    return "changed";
  }

  async function reloadOnce(trigger: Trigger): Promise<boolean> {
    const [rulesCheck, filtersCheck] = await Promise.all([
      check(rules, rules, trigger === "watch"),
      filters ? check(filters, filters, trigger === "watch") : null,
    ]);
    const outcomes = [apply(rules, rulesCheck, trigger), filters ? apply(filters, filtersCheck, trigger) : "none"];
    const refusedAny = outcomes.includes("refused");
    const changed = [rules.name, filters?.name].filter((_, i) => outcomes[i] === "changed");
    if (changed.length > 0) {
      current = Object.freeze({
        ruleSet: rules.value,
        identities: changed.includes("rules") ? identitiesFor(rules.value) : current.identities,
        filters: changed.includes("filters") && filters ? compile(filters.value) : current.filters,
        generation: current.generation + 1,
      });
      logger.info("config.reloaded", { trigger, changed, ...describe(current) });
      options.onChange?.(texts());
    }
    const silent = trigger === "watch" && changed.length === 0 && !refusedAny;
    if (!silent) metrics?.configReloads.inc({ result: refusedAny ? "failure" : "success" });
    if (trigger === "reload" && changed.length === 0 && !refusedAny) logger.info("config.unchanged", describe(current));
    return !refusedAny;
  }

  // Reloads run one after another, so that a slow read can never overwrite a newer state.
  let queue: Promise<unknown> = Promise.resolve();
  const enqueue = (trigger: Trigger): Promise<boolean> => {
    const run = queue.then(() => reloadOnce(trigger)).catch((error: unknown) => {
      logger.error("config.reload_failed", { trigger, error });
      metrics?.configReloads.inc({ result: "failure" });
      return false;
    });
    queue = run;
    return run;
  };

  /*
   * Directories, not files: editors and ConfigMap updates replace a file by renaming another
   * over it, and a watch on the old file would go quiet. Any event in the directory schedules a
   * reread; files whose text did not change are left alone, so unrelated churn costs one read.
   */
  let timer: NodeJS.Timeout | undefined;
  const schedule = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      void enqueue("watch");
    }, debounceMs);
    timer.unref();
  };
  /*
   * A watcher can die (an error event) or go quiet without one when its directory is renamed
   * away and another put in its place: each is watched by inode, checked on every event and
   * every watchCheckMs, and watched again (logged) when it changed or its watcher failed.
   */
  interface DirectoryWatch {
    directory: string;
    watcher: FSWatcher | null;
    ino: number | null;
  }
  let closed = false;
  const watches: DirectoryWatch[] = [
    ...new Set([rules.path, ...(filters ? [filters.path] : [])].map((path) => dirname(resolve(path)))),
  ].map((directory) => ({ directory, watcher: null, ino: null }));
  const establish = async (entry: DirectoryWatch, restart: string | null): Promise<void> => {
    entry.watcher?.close();
    entry.watcher = null;
    entry.ino = null;
    try {
      entry.ino = (await stat(entry.directory)).ino;
      if (closed) return;
      // Not persistent: a forgotten close() must not keep the process alive.
      const watcher = watch(entry.directory, { persistent: false }, () => {
        schedule();
        void verify();
      });
      watcher.on("error", (error) => {
        logger.warn("config.watch_failed", { directory: entry.directory, error });
        if (entry.watcher === watcher) void establish(entry, "watcher failed");
      });
      entry.watcher = watcher;
      if (restart) {
        logger.warn("config.watch_restarted", { directory: entry.directory, reason: restart });
        // What changed while nobody was watching.
        schedule();
      }
    } catch (error) {
      logger.warn("config.watch_failed", { directory: entry.directory, error, fallback: "retried every check" });
    }
  };
  // One check at a time, so that an event and the interval cannot both watch a directory again.
  let verifying: Promise<void> | null = null;
  const verify = (): Promise<void> =>
    (verifying ??= verifyAll().finally(() => {
      verifying = null;
    }));
  const verifyAll = async (): Promise<void> => {
    for (const entry of watches) {
      const ino = await stat(entry.directory).then((found) => found.ino, () => null);
      if (closed) return;
      if (entry.watcher === null) {
        if (ino !== null) await establish(entry, "directory back");
      } else if (ino !== entry.ino) {
        await establish(entry, ino === null ? "directory gone" : "directory replaced");
      }
    }
  };
  await Promise.all(watches.map((entry) => establish(entry, null)));
  const checker = setInterval(() => void verify(), options.watchCheckMs ?? 5000);
  checker.unref();

  function texts(): PolicyTexts {
    return { rules: rules.text, ...(filters ? { filters: filters.text } : {}), generation: current.generation };
  }

  return {
    ...(viewOf(() => current) as Pick<WatchedPolicy, "ruleSet" | "identities" | "filters" | "generation" | "version">),
    texts,
    reload: () => enqueue("reload"),
    close() {
      closed = true;
      clearTimeout(timer);
      clearInterval(checker);
      for (const entry of watches) entry.watcher?.close();
    },
  };
}
