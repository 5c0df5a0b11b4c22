import type { ApiServices } from "../api/operation.js";
import type { ReceiptdConfig } from "../config/config.js";
import { loadFiltersFile, loadRuleSetFile } from "../config/rule-files.js";
import { parseFiltersText, parseRuleSetText } from "../rules/parse.js";
import type { Logger } from "../ops/log.js";
import type { Metrics } from "../ops/metrics.js";
import { watchPolicy } from "../ops/reload.js";
import type { LivePolicy, PolicyTexts } from "../ops/reload.js";
import type { RuleSet } from "../rules/model.js";
import { identitiesOfRules } from "../rules/recipients.js";
import { importFiles } from "../store/import.js";
import type { Scope, StateStore } from "../store/store.js";
import { followStore } from "./store-policy.js";

/** What the MX reads, wherever receiving is owned: the files (file mode) or the store (store mode). */
export interface Receiving {
  policy: LivePolicy;
  /** SIGHUP: rereads the files in file mode; the store needs no reload. */
  reload(): Promise<boolean>;
  /** What acceptor processes mirror. */
  texts(): PolicyTexts;
  fileOwned: ApiServices["fileOwned"];
  close(): void;
}

function identitiesToImport(configured: string[] | undefined, ruleSet: RuleSet): string[] {
  if (configured && configured.length > 0) return configured;
  const implied = identitiesOfRules(ruleSet.rules);
  return [...implied.domains];
}

/**
 * File mode: the files are the truth, watched as before, and imported into the store at start
 * and on every change, so that the API reads what the MX does. Store mode: the MX follows the
 * store, seeded once from `seed` when the store is empty.
 */
export async function startReceiving(
  config: ReceiptdConfig,
  options: { store: StateStore; scope: Scope; logger: Logger; metrics: Metrics; clock: () => Date; onChange?: (texts: PolicyTexts) => void },
): Promise<Receiving> {
  const { serve } = config;
  const { store, scope, logger, clock } = options;
  if (serve.rules !== undefined) {
    const rulesFile = serve.rules;
    // From the texts of the version that took effect, so that the store gets exactly what the MX uses.
    const importNow = async (texts: PolicyTexts) => {
      const ruleSet = parseRuleSetText(texts.rules ?? "", rulesFile);
      const filters = texts.filters === undefined ? undefined : parseFiltersText(texts.filters, serve.filters ?? "filters");
      await store.update(scope, { via: "file", operation: "ImportFiles", target: { RuleSetName: ruleSet.name, file: rulesFile } }, (state) => ({
        state: importFiles(state, { ruleSet, ...(filters ? { filters } : {}), identities: identitiesToImport(serve.identities, ruleSet) }, clock()),
        result: undefined,
      }));
    };
    let pending: Promise<void> = Promise.resolve();
    const watched = await watchPolicy({
      sources: {
        rules: rulesFile,
        ...(serve.filters ? { filters: serve.filters } : {}),
        ...(serve.identities ? { identities: serve.identities } : {}),
      },
      logger,
      metrics: options.metrics,
      tlsOffered: serve.smtp.tls !== undefined,
      onChange: (texts) => {
        options.onChange?.(texts);
        pending = pending
          .then(() => importNow(texts))
          .catch((error: unknown) => logger.error("state.import_failed", { file: rulesFile, error }));
      },
    });
    await importNow(watched.texts());
    return {
      policy: watched,
      reload: () => watched.reload(),
      texts: () => watched.texts(),
      fileOwned: (asked) =>
        asked.account === scope.account && asked.region === scope.region
          ? { ruleSet: watched.ruleSet().name, rulesFile, ...(serve.filters === undefined ? {} : { filtersFile: serve.filters }) }
          : null,
      close: () => watched.close(),
    };
  }

  const seed = serve.seed;
  if (seed?.rules && (await store.read(scope)).revision === 0) {
    const ruleSet = await loadRuleSetFile(seed.rules);
    const filters = seed.filters ? await loadFiltersFile(seed.filters) : undefined;
    await store.update(scope, { via: "import", operation: "Seed", target: { RuleSetName: ruleSet.name, file: seed.rules } }, (state) => ({
      state: importFiles(state, { ruleSet, ...(filters ? { filters } : {}), identities: identitiesToImport(seed.identities, ruleSet) }, clock()),
      result: undefined,
    }));
    logger.info("state.seeded", { rules: seed.rules, filters: seed.filters, ruleSet: ruleSet.name });
  }
  const followed = await followStore(store, scope, options.onChange);
  return { policy: followed, reload: async () => true, texts: () => followed.texts(), fileOwned: () => null, close: () => followed.close() };
}
