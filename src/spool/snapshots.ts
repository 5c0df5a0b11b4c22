import { createHash } from "node:crypto";
import { readFile, rename } from "node:fs/promises";
import { join } from "node:path";
import { RuleSetValidationError, parseRuleSet } from "../rules/parse.js";
import type { RuleSet } from "../rules/model.js";
import { toDescribeJson } from "../rules/store.js";
import { DirectorySync } from "./dir-sync.js";
import { writeSmallFile } from "./fd.js";
import { checkHash, exists, isMissing } from "./layout.js";
import type { SpoolPaths } from "./layout.js";

export interface Snapshot {
  ruleSet: RuleSet;
  identities: { addresses: readonly string[]; domains: readonly string[] };
}

/**
 * The rule-set snapshot a message is to be evaluated against is not on disk. No retry brings it
 * back, so it is no disk trouble (it has no errno code) but the message's end.
 */
export class SnapshotGone extends Error {
  constructor(
    readonly hash: string,
    path: string,
  ) {
    super(`snapshot ${hash} is missing (${path})`);
  }
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

function snapshotText(snapshot: Snapshot): string {
  return JSON.stringify({
    ruleSet: toDescribeJson(snapshot.ruleSet),
    // Sorted, so that the same identities listed in another order are the same snapshot.
    identities: {
      addresses: [...snapshot.identities.addresses].sort(),
      domains: [...snapshot.identities.domains].sort(),
    },
  });
}

function stringList(value: unknown, what: string): readonly string[] {
  if (!Array.isArray(value) || !value.every((item) => typeof item === "string")) {
    throw new TypeError(`${what} is not a list of strings`);
  }
  return Object.freeze([...value]);
}

/** Tells apart the temporary files of concurrent snapshot saves in this process. */
let temporaryFiles = 0;

/**
 * snapshots/<sha256>.json: the rule sets (with identities) messages are evaluated against, stored
 * once each under the SHA-256 of their JSON. The rule set is kept as SES JSON and parsed again on
 * load, so that snapshots outlive changes to the model.
 */
export class Snapshots {
  /** Snapshots known to be on disk durably. */
  private readonly saved = new Set<string>();
  private readonly saving = new Map<string, Promise<void>>();
  private readonly loaded = new Map<string, Promise<Snapshot>>();
  private readonly directorySync: DirectorySync;

  constructor(
    private readonly paths: SpoolPaths,
    private readonly fsync: boolean,
  ) {
    this.directorySync = new DirectorySync(paths.snapshots, fsync);
  }

  /** Stores the snapshot unless it is there already, and returns its hash. */
  async save(snapshot: Snapshot): Promise<string> {
    const text = snapshotText(snapshot);
    const hash = sha256(text);
    if (this.saved.has(hash)) return hash;
    let saving = this.saving.get(hash);
    if (!saving) {
      saving = this.write(hash, text).finally(() => this.saving.delete(hash));
      this.saving.set(hash, saving);
    }
    await saving;
    return hash;
  }

  /** Whether the snapshot of `hash` is on disk. */
  async has(hash: string): Promise<boolean> {
    return this.saved.has(hash) || (await exists(this.path(hash)));
  }

  async load(hash: string): Promise<Snapshot> {
    checkHash(hash);
    let loading = this.loaded.get(hash);
    if (!loading) {
      loading = this.read(hash);
      this.loaded.set(hash, loading);
      // A failed read (a disk error) may succeed later; only successes are worth keeping.
      loading.catch(() => this.loaded.delete(hash));
    }
    return loading;
  }

  close(): Promise<void> {
    return this.directorySync.close();
  }

  private path(hash: string): string {
    return join(this.paths.snapshots, `${hash}.json`);
  }

  private async write(hash: string, text: string): Promise<void> {
    const path = this.path(hash);
    if (!(await exists(path))) {
      // Acceptor processes (or two spools in one process) may save the same snapshot at once.
      const temporary = join(this.paths.tmp, `snapshot-${hash}-${process.pid}-${temporaryFiles++}.json`);
      await writeSmallFile(temporary, text, { durable: this.fsync });
      await rename(temporary, path);
      await this.directorySync.sync();
    }
    this.saved.add(hash);
  }

  private async read(hash: string): Promise<Snapshot> {
    const path = this.path(hash);
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (error) {
      throw isMissing(error) ? new SnapshotGone(hash, path) : error;
    }
    const source = `snapshot ${hash}`;
    if (sha256(text) !== hash) throw new Error(`${source} does not match its hash`);
    const doc = JSON.parse(text) as { ruleSet?: unknown; identities?: { addresses?: unknown; domains?: unknown } };
    const parsed = parseRuleSet(doc.ruleSet);
    if (!parsed.ok) throw new RuleSetValidationError(source, parsed.issues);
    this.saved.add(hash);
    return Object.freeze({
      ruleSet: parsed.value,
      identities: Object.freeze({
        addresses: stringList(doc.identities?.addresses, `${source}: identities.addresses`),
        domains: stringList(doc.identities?.domains, `${source}: identities.domains`),
      }),
    });
  }
}
