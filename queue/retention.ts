/**
 * Retention (`RETENTION_HOURS`) and crash leftovers. Ended jobs are indexed by
 * end time, so a sweep reads only what is due; files without a live job
 * (a crash between writing a file and committing its job) are removed after
 * a grace period that covers that window.
 */
import type { Store } from "../media/store.ts";
import { FINAL_STATUSES } from "../shared/api.ts";
import type { JobRecord } from "./jobs.ts";
import { keys } from "./keys.ts";

/** Deletes jobs that ended more than `retentionMs` ago, with their files. */
export async function sweepExpired(
  kv: Deno.Kv,
  store: Store,
  now: number,
  retentionMs: number,
): Promise<number> {
  let removed = 0;
  const due = kv.list<string>({
    start: keys.finished(0, ""),
    end: keys.finished(now - retentionMs, "\uffff"),
  });
  for await (const entry of due) {
    const id = entry.value;
    const job = await kv.get<JobRecord>(keys.job(id));
    const op = kv.atomic().check(job).delete(entry.key).delete(keys.job(id))
      .delete(keys.progress(id));
    if (job.value) op.delete(keys.sessionJob(job.value.session, id));
    if (!(await op.commit()).ok) continue; // changed meanwhile: next sweep
    await store.removeJob(id);
    removed++;
  }
  return removed;
}

/**
 * Removes files that no live job needs: an image whose job is missing or
 * ended, a video whose job is not done, unfinished uploads and encodes. Only files older
 * than `graceMs` are touched, so an upload or an encode in flight is safe.
 */
export async function sweepOrphans(
  kv: Deno.Kv,
  store: Store,
  now: number,
  graceMs: number,
): Promise<number> {
  let removed = 0;
  for await (const entry of store.entries()) {
    if (now - entry.mtime < graceMs) continue;
    let keep = false;
    if (entry.kind !== "partial") {
      const job = (await kv.get<JobRecord>(keys.job(entry.id))).value;
      keep = entry.kind === "image"
        ? job !== null && !FINAL_STATUSES.has(job.status)
        : job?.status === "done";
    }
    if (!keep) {
      await store.removeEntry(entry);
      removed++;
    }
  }
  return removed;
}
