/**
 * The count behind `DATA_MAX_BYTES` (API.md): the bytes of the images and
 * video copies kept, one KV key that every process shares. Each change rides
 * in the commit that changes what a job keeps (created, ended, deleted), so a
 * refused or crashed upload never counts; files are written before the commit
 * that counts them and removed after the one that stops counting them. What a
 * crash between a commit and a file operation leaves (a file no job counts)
 * the orphan sweep removes, and its recount (`retention.ts`) writes the true
 * total, so no drift lasts past one sweep.
 *
 * The key is a `Deno.KvU64` changed with `sum`, which needs no check and so
 * never makes two writers retry against each other; a subtraction is a sum of
 * the two's complement (`sum` wraps at 2^64), and the value is read as signed.
 */
import type { JobRecord } from "./jobs.ts";
import { keys } from "./keys.ts";

const U64 = 1n << 64n;

/**
 * Whether a job's image is kept: while it waits or runs, and after it failed
 * or was cancelled (for a retry, until retention or a delete). A done job's
 * image goes once its video is made. Records that ended before failed and
 * cancelled jobs kept their image have no `imageKept` and no image.
 */
export function keepsImage(job: JobRecord | null): boolean {
  if (!job) return false;
  if (job.status === "queued" || job.status === "processing") return true;
  return job.status !== "done" && job.imageKept === true;
}

/**
 * The bytes a job's record says are kept for it: its image while
 * {@link keepsImage}, its video copies once done.
 */
export function countedBytes(job: JobRecord | null): number {
  if (!job) return 0;
  if (keepsImage(job)) return job.image.bytes;
  // Records from before every copy was counted know the MP4 alone.
  return job.status === "done" && job.video
    ? job.video.stored ?? job.video.bytes
    : 0;
}

/** Adds `delta` bytes (negative: removes) to the count, in `op`. */
export function addDataBytes(
  op: Deno.AtomicOperation,
  delta: number,
): Deno.AtomicOperation {
  if (delta === 0) return op;
  const n = BigInt(delta);
  return op.sum(keys.dataBytes(), n < 0n ? U64 + n : n);
}

/** The count as a signed number (a moment's negative after a recount is possible). */
export function signedBytes(entry: Deno.KvEntryMaybe<Deno.KvU64>): number {
  return Number(BigInt.asIntN(64, entry.value?.value ?? 0n));
}

/** The bytes kept now, never below 0. */
export async function dataBytes(kv: Deno.Kv): Promise<number> {
  return Math.max(0, signedBytes(await kv.get<Deno.KvU64>(keys.dataBytes())));
}
