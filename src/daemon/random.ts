import { randomBytes } from "node:crypto";

/**
 * Random bytes fetched from the CSPRNG 4 KB at a time. Every session and every message takes a
 * few, and one randomBytes() call each cost tens of microseconds of main-thread time here (it
 * goes to the system's generator through a job), several percent of a small message's
 * acceptance. Each byte is handed out once, so IDs stay as unpredictable as before.
 */
const POOL_BYTES = 4096;
let pool = Buffer.alloc(0);
let used = 0;

export function pooledRandomBytes(size: number): Buffer {
  if (size > POOL_BYTES) return randomBytes(size);
  if (used + size > pool.length) {
    pool = randomBytes(POOL_BYTES);
    used = 0;
  }
  // A copy, as randomBytes gives: callers may keep or change what they got.
  const bytes = Buffer.from(pool.subarray(used, used + size));
  used += size;
  return bytes;
}
