/**
 * The acceptor's side of the spool (Postfix's cleanup): stores each message durably before the
 * listener may answer 250 (docs/behaviour.md §4), and the rule-set snapshots messages refer to.
 *
 * Commit point: queue/<id>.msg is created, and queue/ fsync'd while the body streams in; the file
 * is complete with its footer (format.ts) and fdatasync'd before the 250. So the 250 waits for one
 * write and one fdatasync after the final dot, and for nothing else. A file in queue/ without a
 * footer is a store cut short and recovery deletes it; one whose content does not match its
 * footer (the machine went down before the fdatasync finished, and blocks reached the disk out of
 * order) is found when it is first read (Queue.read) and deleted too. Neither was answered 250.
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { parseMessageHead, scanHeaderEnd } from "../mail/headers.js";
import type { MessageHead } from "../mail/headers.js";
import { DirectorySync } from "./dir-sync.js";
import { closeFd, fdatasync, openFd } from "./fd.js";
import { storedTrailer } from "./format.js";
import type { MessageState } from "./format.js";
import { checkHash, checkId, spoolPaths } from "./layout.js";
import type { SpoolOptions, SpoolPaths } from "./layout.js";
import { ReservedFiles } from "./reserve.js";
import { Snapshots } from "./snapshots.js";
import type { Snapshot } from "./snapshots.js";
import { writeStream } from "./staged-writer.js";

/** The largest header block kept in memory for a message's first read (see Queue.stored). */
const JUST_STORED_HEAD_BYTES = 64 * 1024;

export interface SpoolWriterParts {
  paths: SpoolPaths;
  fsync: boolean;
  /** Shared with the queue in the daemon, so that their fsyncs of queue/ are grouped together. */
  queueSync: DirectorySync;
  snapshots: Snapshots;
  /** Told of each message once it is stored, with its head when that fits in JUST_STORED_HEAD_BYTES. */
  onStored?: (state: MessageState, head: MessageHead | null) => void;
}

export class SpoolWriter {
  private readonly reserved: ReservedFiles;

  constructor(private readonly parts: SpoolWriterParts) {
    this.reserved = new ReservedFiles(parts.paths.queue, parts.queueSync);
  }

  /**
   * A writer into the spool of a running daemon, for an acceptor process beside it. The daemon
   * owns the spool and recovered it; it learns of each message from the acceptor and adopts it.
   */
  static forAcceptor(options: SpoolOptions): SpoolWriter {
    const paths = spoolPaths(options.dir);
    const fsync = options.fsync ?? true;
    return new SpoolWriter({ paths, fsync, queueSync: new DirectorySync(paths.queue, fsync), snapshots: new Snapshots(paths, fsync) });
  }

  /**
   * The ID for the next message to accept. Once IDs are taken from here, the writer keeps files
   * created ahead for them (they appear in queue/ as empty files until used or closed), and
   * `store` for such an ID starts writing at once. `newId` makes a new ID.
   */
  claimMessageId(newId: () => string): string {
    return this.reserved.claim(newId);
  }

  /** Stores the snapshot once, under the SHA-256 of its JSON, and returns that hash. */
  saveSnapshot(snapshot: Snapshot): Promise<string> {
    return this.parts.snapshots.save(snapshot);
  }

  /**
   * Stores one message durably. Only when this resolves may the listener answer 250. When `body`
   * throws (size limit, smuggling, client gone), nothing is left behind and the error is rethrown.
   */
  async store(
    state: MessageState,
    body: AsyncIterable<Buffer>,
    options: {
      /**
       * What can only be known once the whole body has been read (authentication verdicts and
       * headers), merged into the state before it is written after the message.
       */
      completeState?: () => Promise<Partial<Pick<MessageState, "verdicts" | "receiptHeaders">>>;
    } = {},
  ): Promise<{ size: number }> {
    const { paths, fsync, queueSync, snapshots, onStored } = this.parts;
    const id = state.messageId;
    const path = join(paths.queue, `${id}.msg`);
    const reservedFd = this.reserved.take(id);
    try {
      checkId(id);
      checkHash(state.snapshot);
      // A message whose snapshot is missing could be accepted but never evaluated.
      if (!(await snapshots.has(state.snapshot))) throw new Error(`snapshot ${state.snapshot} was not saved`);
    } catch (error) {
      if (reservedFd !== undefined) await this.reserved.discard(id, reservedFd);
      throw error;
    }

    const { completeState } = options;
    const keepsHead = onStored !== undefined;
    // A copy of the header block, never a reference to a chunk: a chunk kept until the message
    // is stored outlives the young generation, and then its memory (tens of KB) waits for a full
    // garbage collection; with large messages that meant one every few dozen messages.
    let prefix = Buffer.alloc(0);
    let lineStart = 0;
    let headerSeen = false;
    let bodyCrc = 0;
    async function* keepingPrefix(): AsyncGenerator<Buffer> {
      for await (const chunk of body) {
        if (keepsHead && !headerSeen && prefix.length < JUST_STORED_HEAD_BYTES) {
          const grown = Buffer.concat([prefix, chunk.subarray(0, JUST_STORED_HEAD_BYTES - prefix.length)]);
          const scan = scanHeaderEnd(grown, lineStart, grown.length);
          headerSeen = scan.end !== -1;
          lineStart = scan.lineStart;
          prefix = headerSeen ? Buffer.from(grown.subarray(0, scan.end)) : grown;
        }
        bodyCrc = crc32(chunk, bodyCrc);
        yield chunk;
      }
    }
    let finalState = state;
    let size: number;
    const fd = reservedFd ?? (await openFd(path, "wx"));
    // The file's directory entry is made durable while the body streams in, not after it.
    const entryDurable = reservedFd === undefined ? queueSync.sync() : Promise.resolve();
    entryDurable.catch(() => undefined);
    let closing: Promise<void> | null = null;
    try {
      size = await writeStream(fd, keepingPrefix(), async (bodyBytes) => {
        if (completeState) finalState = { ...state, ...(await completeState()) };
        return storedTrailer(bodyBytes, bodyCrc, finalState);
      });
      if (fsync) await fdatasync(fd);
      // Nothing written can be lost by a failing close once the data is durable, so its error
      // is not the message's, and the 250 does not wait for it.
      closing = closeFd(fd).catch(() => undefined);
      await entryDurable;
    } catch (error) {
      // Not answered 250, so it must not be processed either: the sender will try again.
      await (closing ?? closeFd(fd).catch(() => undefined));
      await rm(path, { force: true });
      throw error;
    }
    if (reservedFd !== undefined) this.reserved.refill();
    // A prefix cut inside the header block would pass for a whole header block.
    onStored?.(finalState, headerSeen || prefix.length === size ? freshHead(prefix, size) : null);
    return { size };
  }

  /** Removes the reserved files and closes the directories kept open for fsyncs; the writer is not used afterwards. */
  async close(): Promise<void> {
    await this.reserved.close();
    await Promise.all([this.parts.queueSync.close(), this.parts.snapshots.close()]);
  }
}

/** The head of a message just stored, from the prefix kept while it streamed. */
function freshHead(prefix: Buffer, size: number): MessageHead | null {
  let head: MessageHead;
  try {
    head = parseMessageHead(prefix, { maxHeaderBytes: JUST_STORED_HEAD_BYTES });
  } catch {
    return null; // read() will meet the same trouble on disk and report it
  }
  return { ...head, headerBlock: Buffer.from(head.headerBlock), size };
}
