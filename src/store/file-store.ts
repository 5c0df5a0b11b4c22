import { mkdir, open, readFile, rename, unlink, writeFile } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { EMPTY_SCOPE_STATE, scopeStateFromJson, scopeStateToJson } from "./state-json.js";
import type { ScopeStateJson } from "./state-json.js";
import type { AuditRecord, Change, ChangeOrigin, Scope, ScopeState, StateStore } from "./store.js";

/**
 * The state store in one directory: `journal.jsonl`, one line per change (its audit record and
 * the scope's whole new state), appended and fsync'd before the change is acknowledged. At open
 * the journal is replayed from `snapshot.json`, written every SNAPSHOT_EVERY changes and at
 * close; a torn last line (a crash mid-append, never acknowledged) is cut off. The journal is
 * kept whole: it is the audit history.
 */
const SNAPSHOT_EVERY = 500;

interface JournalLine extends AuditRecord {
  state: ScopeStateJson;
}

interface Snapshot {
  seq: number;
  scopes: { scope: Scope; state: ScopeStateJson }[];
}

const keyOf = (scope: Scope) => `${scope.account}/${scope.region}`;

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** One daemon per state directory: the lock holds the owner's pid; a dead owner's lock is taken over. */
async function lock(dir: string): Promise<() => Promise<void>> {
  const path = join(dir, "lock");
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(path, String(process.pid), { flag: "wx" });
      return () => unlink(path).catch(() => undefined);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const pid = Number.parseInt(await readFile(path, "utf8").catch(() => ""), 10);
      let alive = false;
      if (Number.isInteger(pid) && pid > 0) {
        try {
          process.kill(pid, 0);
          alive = true;
        } catch (killError) {
          alive = (killError as NodeJS.ErrnoException).code === "EPERM";
        }
      }
      if (alive) throw new Error(`state directory ${dir} is in use by process ${pid}`);
      await unlink(path).catch(() => undefined);
    }
  }
  throw new Error(`state directory ${dir}: could not take its lock`);
}

/** The snapshot and the journal after it; `tornAt`: where a torn last line starts, if one is there. */
async function loadStates(dir: string): Promise<{ states: Map<string, { scope: Scope; state: ScopeState }>; seq: number; sinceSnapshot: number; tornAt: number | null }> {
  const journalPath = join(dir, "journal.jsonl");
  const snapshotPath = join(dir, "snapshot.json");
  const states = new Map<string, { scope: Scope; state: ScopeState }>();
  let seq = 0;
  let snapshotSeq = 0;
  let sinceSnapshot = 0;
  const snapshotText = await readFile(snapshotPath, "utf8").catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return null;
    throw error;
  });
  if (snapshotText !== null) {
    const snapshot = JSON.parse(snapshotText) as Snapshot;
    seq = snapshotSeq = snapshot.seq;
    for (const entry of snapshot.scopes) states.set(keyOf(entry.scope), { scope: entry.scope, state: scopeStateFromJson(entry.state, snapshotPath) });
  }
  const journal = await readFile(journalPath).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return Buffer.alloc(0);
    throw error;
  });
  const lines = journal.toString("utf8").split("\n");
  let goodBytes = 0;
  for (const [i, line] of lines.entries()) {
    if (line === "") continue;
    let record: JournalLine;
    try {
      record = JSON.parse(line) as JournalLine;
    } catch {
      // Only the last line can be torn: it was being appended when the process died, and was never acknowledged.
      if (i >= lines.length - 2) break;
      throw new Error(`${journalPath}:${i + 1}: not a journal line`);
    }
    goodBytes += Buffer.byteLength(line) + 1;
    if (record.seq <= snapshotSeq) continue;
    states.set(keyOf(record.scope), { scope: record.scope, state: scopeStateFromJson(record.state, `${journalPath}:${i + 1}`) });
    seq = Math.max(seq, record.seq);
    sinceSnapshot++;
  }
  return { states, seq, sinceSnapshot, tornAt: goodBytes < journal.length ? goodBytes : null };
}

/**
 * The state as it is on disk, for reading beside a running daemon (`receiptd state export`,
 * `audit`): no lock, nothing written. A line being appended meanwhile is not read.
 */
export async function readFileStore(dir: string): Promise<Pick<StateStore, "read" | "audit" | "scopes">> {
  const { states } = await loadStates(dir);
  return {
    read: async (scope) => states.get(keyOf(scope))?.state ?? EMPTY_SCOPE_STATE,
    audit: (query) => readAudit(join(dir, "journal.jsonl"), query),
    scopes: async () => [...states.values()].map((entry) => entry.scope),
  };
}

async function readAudit(journalPath: string, query: Parameters<StateStore["audit"]>[0] = {}): Promise<AuditRecord[]> {
  const text = await readFile(journalPath, "utf8").catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return "";
    throw error;
  });
  const records: AuditRecord[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    let parsed: JournalLine;
    try {
      parsed = JSON.parse(line) as JournalLine;
    } catch {
      continue;
    }
    const record: AuditRecord = { ...parsed };
    delete (record as Partial<JournalLine>).state;
    if (query.scope && keyOf(query.scope) !== keyOf(record.scope)) continue;
    if (query.since && new Date(record.time) < query.since) continue;
    records.push(record);
  }
  return query.limit === undefined ? records : records.slice(-query.limit);
}

export async function openFileStore(options: { dir: string; clock?: () => Date }): Promise<StateStore & { dir: string }> {
  const { dir } = options;
  const clock = options.clock ?? (() => new Date());
  await mkdir(dir, { recursive: true });
  const unlock = await lock(dir);
  const journalPath = join(dir, "journal.jsonl");
  const snapshotPath = join(dir, "snapshot.json");
  let loaded: Awaited<ReturnType<typeof loadStates>>;
  try {
    loaded = await loadStates(dir);
    if (loaded.tornAt !== null) {
      const handle = await open(journalPath, "r+");
      await handle.truncate(loaded.tornAt);
      await handle.sync();
      await handle.close();
    }
  } catch (error) {
    await unlock();
    throw error;
  }
  const { states } = loaded;
  let { seq, sinceSnapshot } = loaded;
  const journal: FileHandle = await open(journalPath, "a");
  await journal.sync();
  await syncDirectory(dir);

  const listeners = new Set<(scope: Scope, state: ScopeState, record: AuditRecord) => void>();
  // Changes are applied one at a time across the store: one journal, one order of `seq`.
  let queue: Promise<unknown> = Promise.resolve();
  let closed = false;

  const writeSnapshot = async () => {
    const snapshot: Snapshot = { seq, scopes: [...states.values()].map(({ scope, state }) => ({ scope, state: scopeStateToJson(state) })) };
    const temp = `${snapshotPath}.tmp`;
    const handle = await open(temp, "w");
    try {
      await handle.writeFile(JSON.stringify(snapshot));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, snapshotPath);
    await syncDirectory(dir);
    sinceSnapshot = 0;
  };

  const apply = async <T>(scope: Scope, origin: ChangeOrigin, change: (state: ScopeState) => Change<T>): Promise<T> => {
    if (closed) throw new Error("the state store is closed");
    const current = states.get(keyOf(scope))?.state ?? EMPTY_SCOPE_STATE;
    const { state, result } = change(current);
    if (state === current) return result;
    const next: ScopeState = Object.freeze({ ...state, revision: current.revision + 1 });
    const record: AuditRecord = { ...origin, seq: seq + 1, time: clock().toISOString(), scope, revision: next.revision };
    await journal.write(`${JSON.stringify({ ...record, state: scopeStateToJson(next) } satisfies JournalLine)}\n`);
    await journal.sync();
    seq = record.seq;
    states.set(keyOf(scope), { scope, state: next });
    for (const listener of listeners) listener(scope, next, record);
    if (++sinceSnapshot >= SNAPSHOT_EVERY) await writeSnapshot();
    return result;
  };

  return {
    dir,
    read: async (scope) => states.get(keyOf(scope))?.state ?? EMPTY_SCOPE_STATE,
    update<T>(scope: Scope, origin: ChangeOrigin, change: (state: ScopeState) => Change<T>): Promise<T> {
      const run = queue.then(() => apply(scope, origin, change));
      queue = run.catch(() => undefined);
      return run;
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    audit: (query) => readAudit(journalPath, query),
    scopes: async () => [...states.values()].map((entry) => entry.scope),
    async close() {
      if (closed) return;
      await queue;
      closed = true;
      if (sinceSnapshot > 0) await writeSnapshot();
      await journal.close();
      await unlock();
    },
  };
}
