/**
 * Job records and the line they wait in: creation, reading, listing, cancel.
 * The model slot and its lease are `lease.ts`. Each function takes the KV
 * handle first; multi-key changes are one atomic commit with checks, retried
 * when another writer got there first.
 */
import {
  FINAL_STATUSES,
  type ImageType,
  type JobError,
  type JobStatus,
} from "../shared/api.ts";
import { finalize } from "./_finalize.ts";
import { getAll } from "./_kv.ts";
import { addDataBytes, signedBytes } from "./data_bytes.ts";
import { keys } from "./keys.ts";

/** What KV stores for a job (epoch ms times); the API view is built from it. */
export interface JobRecord {
  id: string;
  session: string;
  status: JobStatus;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  image: {
    type: ImageType;
    width: number;
    height: number;
    bytes: number;
    orientation: number;
  };
  video: VideoInfo | null;
  error: JobError | null;
  /** How many times the model has started this job. */
  attempts: number;
}

/** A done job's video: the MP4's size and, when packaged, its Clear Key keys. */
export interface VideoInfo {
  bytes: number;
  /** Every copy's bytes (MP4, fragments, CENC): what `DATA_MAX_BYTES` counts. */
  stored?: number;
  /** base64url key id and AES-128 key of the CENC copy (media/cenc.ts), if any. */
  clearKey?: { kid: string; key: string };
}

export interface Progress {
  progress: number;
  at: number;
}

/** The tail of each KV handle's chain of job creations in this process. */
const creating = new WeakMap<Deno.Kv, Promise<unknown>>();

/** Why {@link createJob} did not create: the line or the disk is full. */
export type CreateRefusal =
  | { ok: false; depth: number }
  | { ok: false; dataBytes: number };

/**
 * Stores a new job and its queue entry, counts its image's bytes and rings the
 * queue, in one commit, unless `maxQueue` jobs already wait or its image
 * would take the kept bytes past `maxDataBytes`. The checks on the depth and
 * byte keys keep both caps exact across processes; within one process
 * creations take turns, so that concurrent uploads do not all retry against
 * each other.
 */
export function createJob(
  kv: Deno.Kv,
  job: JobRecord,
  maxQueue: number,
  maxDataBytes = Infinity,
): Promise<{ ok: true; position: number } | CreateRefusal> {
  const run = (creating.get(kv) ?? Promise.resolve()).then(() =>
    commitJob(kv, job, maxQueue, maxDataBytes)
  );
  creating.set(kv, run.catch(() => {}));
  return run;
}

async function commitJob(
  kv: Deno.Kv,
  job: JobRecord,
  maxQueue: number,
  maxDataBytes: number,
): Promise<{ ok: true; position: number } | CreateRefusal> {
  for (;;) {
    const [depth, data] = await kv.getMany<[number, Deno.KvU64]>([
      keys.depth(),
      keys.dataBytes(),
    ]);
    const waiting = depth.value ?? 0;
    if (waiting >= maxQueue) return { ok: false, depth: waiting };
    const kept = signedBytes(data);
    if (kept + job.image.bytes > maxDataBytes) {
      return { ok: false, dataBytes: kept };
    }
    const op = kv.atomic().check(depth, data);
    const res = await addDataBytes(op, job.image.bytes)
      .set(keys.job(job.id), job)
      .set(keys.sessionJob(job.session, job.id), job.id)
      .set(keys.pending(job.createdAt, job.id), job.id)
      .set(keys.depth(), waiting + 1)
      .enqueue({ id: job.id })
      .commit();
    // The newest job is last in line (keys sort by creation time).
    if (res.ok) return { ok: true, position: waiting + 1 };
  }
}

export async function getJob(
  kv: Deno.Kv,
  id: string,
): Promise<JobRecord | null> {
  return (await kv.get<JobRecord>(keys.job(id))).value;
}

/** How many of a session's jobs the page and `GET /api/jobs` list. */
export const SESSION_JOBS_LISTED = 100;

/** A session's jobs, newest first (ids sort by creation time). */
export async function listSessionJobs(
  kv: Deno.Kv,
  session: string,
  limit = SESSION_JOBS_LISTED,
): Promise<JobRecord[]> {
  const ids = [];
  const iter = kv.list<string>({ prefix: keys.sessionJobs(session) }, {
    reverse: true,
    limit,
  });
  for await (const entry of iter) ids.push(entry.value);
  const entries = await getAll<JobRecord>(kv, ids.map(keys.job));
  return entries.flatMap((e) => e.value ? [e.value] : []);
}

/** The progress of each of `ids` (null where none is recorded). */
export async function getProgress(
  kv: Deno.Kv,
  ids: readonly string[],
): Promise<Map<string, Progress | null>> {
  const entries = await getAll<Progress>(kv, ids.map(keys.progress));
  return new Map(ids.map((id, i) => [id, entries[i].value]));
}

/**
 * Cancels a queued or running job. Returns the cancelled job, `"final"` when
 * it had already ended, or null when it does not exist.
 */
export async function cancelJob(
  kv: Deno.Kv,
  id: string,
  now: number,
  retentionMs: number,
): Promise<JobRecord | "final" | null> {
  for (;;) {
    const [job, depth] = await kv.getMany<[JobRecord, number]>([
      keys.job(id),
      keys.depth(),
    ]);
    if (!job.value) return null;
    if (FINAL_STATUSES.has(job.value.status)) return "final";
    const op = kv.atomic().check(job, depth);
    if (job.value.status === "queued") {
      op.delete(keys.pending(job.value.createdAt, id))
        .set(keys.depth(), Math.max(0, (depth.value ?? 1) - 1));
    }
    const cancelled = finalize(op, job.value, now, retentionMs, {
      status: "cancelled",
    });
    if ((await op.commit()).ok) return cancelled;
  }
}
