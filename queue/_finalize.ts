/**
 * The writes that end a job, shared by the two modules that end jobs:
 * `jobs.ts` (a cancel) and `lease.ts` (the model finishing, or a dead
 * worker's job failing after its last attempt). Private to `queue/`.
 */
import { addDataBytes, countedBytes } from "./data_bytes.ts";
import type { JobRecord } from "./jobs.ts";
import { keys } from "./keys.ts";

/**
 * Adds the writes that end a job to `op`: final record, expiry, counters, and
 * the kept bytes (a done job's video counts instead of its image; a failed
 * or cancelled job's image still counts).
 */
export function finalize(
  op: Deno.AtomicOperation,
  job: JobRecord,
  now: number,
  retentionMs: number,
  end: Pick<JobRecord, "status"> & Partial<Pick<JobRecord, "video" | "error">>,
): JobRecord {
  const final: JobRecord = { ...job, ...end, finishedAt: now };
  // A failed or cancelled job keeps its image for a retry (until retention
  // or a delete); a done one gives it up for its video.
  if (end.status !== "done") final.imageKept = true;
  const expireIn = retentionMs;
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
