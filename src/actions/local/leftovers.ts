import { readdir, unlink } from "node:fs/promises";
import { join } from "node:path";
import { OUTBOX_TEMP_NAME } from "../transports/dsn.js";
import { TEMP_FILE_NAME } from "./files.js";
import { STAGED_NAME } from "./maildir.js";

/** The entries of a directory, none when it does not exist (yet). */
async function entries(dir: string) {
  try {
    return await readdir(dir, { withFileTypes: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
}

/** Every file under dir (symlinks not followed) whose name matches `name`. */
async function* matching(dir: string, name: RegExp): AsyncIterable<string> {
  for (const entry of await entries(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* matching(path, name);
    else if (entry.isFile() && name.test(entry.name)) yield path;
  }
}

/**
 * Removes what a crash of the local back end can leave under the data directory: temp files
 * of S3 objects (`s3/**\/.receiptd-tmp-<uuid>`), of DSNs in `outbox/`, and messages staged in a Maildir's tmp/ under
 * this back end's unique names. Only those names are touched, never an object or a delivered
 * message. Meant for start-up, before any action runs; returns the paths removed.
 */
export async function removeLeftoverTemporaries(dataDir: string): Promise<string[]> {
  const removed: string[] = [];
  const remove = async (path: string) => {
    await unlink(path);
    removed.push(path);
  };
  for await (const path of matching(join(dataDir, "s3"), TEMP_FILE_NAME)) await remove(path);
  for (const entry of await entries(join(dataDir, "outbox"))) {
    if (entry.isFile() && OUTBOX_TEMP_NAME.test(entry.name)) await remove(join(dataDir, "outbox", entry.name));
  }
  for (const org of await entries(join(dataDir, "workmail"))) {
    if (!org.isDirectory()) continue;
    for (const mailbox of await entries(join(dataDir, "workmail", org.name))) {
      if (!mailbox.isDirectory()) continue;
      const tmp = join(dataDir, "workmail", org.name, mailbox.name, "tmp");
      for (const entry of await entries(tmp)) {
        if (entry.isFile() && STAGED_NAME.test(entry.name)) await remove(join(tmp, entry.name));
      }
    }
  }
  return removed;
}
