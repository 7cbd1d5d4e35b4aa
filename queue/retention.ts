/**
 * Retention (`RETENTION_HOURS`) and crash leftovers. Ended jobs are indexed by
 * end time, so a sweep reads only what is due; files without a live job
 * (a crash between writing a file and committing its job) are removed after
 * a grace period that covers that window. The orphan sweep also recounts the
 * bytes `DATA_MAX_BYTES` limits from the files themselves (`data_bytes.ts`).
 */
import type { Store, StoredEntry } from "../media/store.ts";
import {
  addDataBytes,
  countedBytes,
  keepsImage,
  signedBytes,
} from "./data_bytes.ts";
import type { JobRecord } from "./jobs.ts";
import { GET_MANY_MAX, keys } from "./keys.ts";

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
      .delete(keys.progress(id)).delete(keys.retried(id));
    if (job.value) op.delete(keys.sessionJob(job.value.session, id));
    // The count drops in the commit; the files go just after (a crash
    // between leaves files no job counts, for the orphan sweep).
    addDataBytes(op, -countedBytes(job.value));
    if (!(await op.commit()).ok) continue; // changed meanwhile: next sweep
    await store.removeJob(id);
    removed++;
  }
  return removed;
}

/**
 * When the first kept job expires (epoch ms; the sweep removes it soon
 * after), or null when no job has ended.
 */
export async function nextExpiry(
  kv: Deno.Kv,
  retentionMs: number,
): Promise<number | null> {
  const iter = kv.list<string>({ prefix: keys.finishedAll() }, { limit: 1 });
  const first = (await iter.next()).value as Deno.KvEntry<string> | undefined;
  return first ? (first.key[1] as number) + retentionMs : null;
}

/**
 * Removes files that no live job needs: an image whose job is missing, done,
 * or ended before images were kept for retries, a video whose job is not done, unfinished uploads and encodes. Only files older
 * than `graceMs` are touched, so an upload or an encode in flight is safe.
 *
 * The files a live job needs are exactly those the count of kept bytes
 * counts, so the same pass adds up their sizes and writes the total: a count
 * that drifted (a crash between a commit and a file operation, a job expired
 * by KV before the sweep came) is right again after one sweep.
 */
export async function sweepOrphans(
  kv: Deno.Kv,
  store: Store,
  now: number,
  graceMs: number,
): Promise<number> {
  const before = await kv.get<Deno.KvU64>(keys.dataBytes());
  let removed = 0, kept = 0;
  // Jobs are read GET_MANY_MAX at a time: one KV round trip per batch.
  const look = async (batch: StoredEntry[]) => {
    const jobs = await kv.getMany<JobRecord[]>(
      batch.map((entry) => keys.job(entry.id)),
    );
    for (const [i, entry] of batch.entries()) {
      const job = jobs[i].value;
      const keep = entry.kind === "image"
        ? keepsImage(job)
        : entry.kind === "video" && job?.status === "done";
      if (keep) kept += entry.size;
      else if (now - entry.mtime >= graceMs) {
        await store.removeEntry(entry);
        removed++;
      }
    }
  };
  let batch: StoredEntry[] = [];
  for await (const entry of store.entries()) {
    batch.push(entry);
    if (batch.length === GET_MANY_MAX) {
      await look(batch);
      batch = [];
    }
  }
  await look(batch);
  await writeRecount(kv, before, kept);
  return removed;
}

/**
 * Writes the recounted total, unless the count moved during the scan: then
 * the scan may have seen some of those moves and missed others, so the count
 * keeps the moves and takes the correction the scan found. Its error is then
 * at most the bytes that moved during the scan, and it does not add up from
 * one sweep to the next: the next quiet sweep writes the exact total.
 */
async function writeRecount(
  kv: Deno.Kv,
  before: Deno.KvEntryMaybe<Deno.KvU64>,
  total: number,
): Promise<void> {
  const exact = await kv.atomic().check(before)
    .set(keys.dataBytes(), new Deno.KvU64(BigInt(total)))
    .commit();
  if (!exact.ok) {
    await addDataBytes(kv.atomic(), total - signedBytes(before)).commit();
  }
}
