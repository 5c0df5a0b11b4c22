import { open } from "node:fs/promises";

/**
 * fsync of a file or a directory by path: for a directory, what makes its entries (a rename,
 * a new file) survive a crash.
 */
export async function syncPath(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
