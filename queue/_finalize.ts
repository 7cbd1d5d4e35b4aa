/**
 * The writes that end a job, shared by the two modules that end jobs:
 * `jobs.ts` (a cancel) and `lease.ts` (the model finishing, or a dead
 * worker's job failing after its last attempt). Private to `queue/`.
 */
import { clientOf } from "./_line.ts";
import { addDataBytes, countedBytes } from "./data_bytes.ts";
import type { JobRecord } from "./jobs.ts";
import { keys } from "./keys.ts";

/**
 * How many of a client address's ended jobs keep their image for a retry
 * (`limit` at most), read with the mark that a commit checks to keep the
 * count exact. Records that ended before the cap were not indexed.
 */
export async function keptImages(
  kv: Deno.Kv,
  client: string,
  limit: number,
): Promise<{ count: number; mark: Deno.KvEntryMaybe<unknown> }> {
  const mark = await kv.get(keys.keptImagesMark(client));
  let count = 0;
  const iter = kv.list({ prefix: keys.keptImages(client) }, { limit });
  for await (const _ of iter) count++;
  return { count, mark };
}

/**
 * Adds to `op` the writes that take an ended job (about to be deleted) out
 * of its address's kept images.
 */
export function forgetKept(
  op: Deno.AtomicOperation,
  job: JobRecord,
  retentionMs: number,
): void {
  if (job.imageKept !== true) return;
  const client = clientOf(job);
  op.delete(keys.keptImage(client, job.id))
    .set(keys.keptImagesMark(client), job.id, { expireIn: retentionMs });
}

/**
 * Adds the writes that end a job to `op`: final record, expiry, counters, and
 * the kept bytes (a done job's video counts instead of its image; a failed
 * or cancelled job's image still counts, unless `keepImage` is false: then
 * its bytes are given back in this commit and the orphan sweep takes the
 * file).
 */
export function finalize(
  op: Deno.AtomicOperation,
  job: JobRecord,
  now: number,
  retentionMs: number,
  end: Pick<JobRecord, "status"> & Partial<Pick<JobRecord, "video" | "error">>,
  keepImage = true,
): JobRecord {
  const final: JobRecord = { ...job, ...end, finishedAt: now };
  const expireIn = retentionMs;
  // A failed or cancelled job keeps its image for a retry (until retention
  // or a delete), unless `keepImage` is false (its address's cap reached);
  // a done one gives it up for its video.
  if (end.status !== "done") {
    final.imageKept = keepImage;
    if (keepImage) {
      const client = clientOf(job);
      op.set(keys.keptImage(client, job.id), job.id, { expireIn })
        .set(keys.keptImagesMark(client), job.id, { expireIn });
    }
  }
  // expireIn is the backstop; the retention sweep deletes on time, files too.
  op.set(keys.job(job.id), final, { expireIn })
    .set(keys.sessionJob(job.session, job.id), job.id, { expireIn })
    .set(keys.finished(now, job.id), job.id, { expireIn })
    .sum(keys.stat(`jobs_${end.status}`), 1n);
  addDataBytes(op, countedBytes(final) - countedBytes(job));
  if (end.status === "done") {
    op.set(keys.progress(job.id), { progress: 100, at: now }, { expireIn });
  } else {
    op.delete(keys.progress(job.id));
  }
  if (job.startedAt !== null) {
    op.sum(
      keys.stat("model_busy_ms"),
      BigInt(Math.max(0, now - job.startedAt)),
    );
  }
  return final;
}
