/**
 * Every KV read and write of jobs, the queue and the model slot. Each function
 * takes the KV handle first; multi-key changes are one atomic commit with
 * checks, retried when another writer got there first.
 */
import {
  FINAL_STATUSES,
  type ImageType,
  type JobError,
  type JobStatus,
} from "../shared/api.ts";
import { keys } from "./keys.ts";

export { FINAL_STATUSES };
export type { JobError, JobStatus };

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
  /** base64url key id and AES-128 key of the CENC copy (media/cenc.ts), if any. */
  clearKey?: { kid: string; key: string };
}

/** The model slot. Only the holder of an unexpired lease runs the model. */
export interface Lease {
  owner: string;
  jobId: string;
  startedAt: number;
  expiresAt: number;
}

export interface Progress {
  progress: number;
  at: number;
}

/** A job is started at most this many times (crashes count) before it fails. */
export const MAX_ATTEMPTS = 3;

/** The tail of each KV handle's chain of job creations in this process. */
const creating = new WeakMap<Deno.Kv, Promise<unknown>>();

/**
 * Stores a new job and its queue entry and rings the queue, in one commit,
 * unless `maxQueue` jobs already wait. The check on the depth key keeps the
 * cap exact across processes; within one process creations take turns, so
 * that concurrent uploads do not all retry against each other.
 */
export function createJob(
  kv: Deno.Kv,
  job: JobRecord,
  maxQueue: number,
): Promise<{ ok: true; position: number } | { ok: false; depth: number }> {
  const run = (creating.get(kv) ?? Promise.resolve()).then(() =>
    commitJob(kv, job, maxQueue)
  );
  creating.set(kv, run.catch(() => {}));
  return run;
}

async function commitJob(
  kv: Deno.Kv,
  job: JobRecord,
  maxQueue: number,
): Promise<{ ok: true; position: number } | { ok: false; depth: number }> {
  for (;;) {
    const depth = await kv.get<number>(keys.depth());
    const waiting = depth.value ?? 0;
    if (waiting >= maxQueue) return { ok: false, depth: waiting };
    const res = await kv.atomic()
      .check(depth)
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

/** A session's jobs, newest first (ids sort by creation time). */
export async function listSessionJobs(
  kv: Deno.Kv,
  session: string,
  limit = 100,
): Promise<JobRecord[]> {
  const ids = [];
  const iter = kv.list<string>({ prefix: keys.sessionJobs(session) }, {
    reverse: true,
    limit,
  });
  for await (const entry of iter) ids.push(entry.value);
  const jobs: JobRecord[] = [];
  // getMany takes at most 10 keys (DESIGN.md, KV limits).
  for (let i = 0; i < ids.length; i += 10) {
    const entries = await kv.getMany<JobRecord[]>(
      ids.slice(i, i + 10).map(keys.job),
    );
    for (const e of entries) if (e.value) jobs.push(e.value);
  }
  return jobs;
}

/** When the model slot's current lease runs out, or null when it is free. */
export async function leaseExpiry(kv: Deno.Kv): Promise<number | null> {
  return (await kv.get<Lease>(keys.lease())).value?.expiresAt ?? null;
}

/**
 * Takes the oldest waiting job for `owner`, or returns null when the slot is
 * held by an unexpired lease or nothing waits. A lease that expired (its
 * worker died) first puts its job back in line, or fails it after
 * {@link MAX_ATTEMPTS}.
 */
export async function claimNext(
  kv: Deno.Kv,
  opts: { owner: string; now: number; leaseMs: number; retentionMs: number },
): Promise<JobRecord | null> {
  for (;;) {
    const lease = await kv.get<Lease>(keys.lease());
    if (lease.value && lease.value.expiresAt > opts.now) return null;
    if (lease.value) {
      await returnToQueue(kv, lease, opts.now, opts.retentionMs, false);
      continue;
    }
    const iter = kv.list<string>({ prefix: keys.pendingAll() }, { limit: 1 });
    const first = (await iter.next()).value as Deno.KvEntry<string> | undefined;
    if (!first) return null;
    const id = first.value;
    const [job, depth] = await kv.getMany<[JobRecord, number]>([
      keys.job(id),
      keys.depth(),
    ]);
    const op = kv.atomic().check(lease, first, job, depth)
      .delete(first.key)
      .set(keys.depth(), Math.max(0, (depth.value ?? 1) - 1));
    if (!job.value || job.value.status !== "queued") {
      await op.commit(); // an orphan entry: drop it and look again
      continue;
    }
    const started: JobRecord = {
      ...job.value,
      status: "processing",
      startedAt: opts.now,
      attempts: job.value.attempts + 1,
    };
    const res = await op
      .set(keys.job(id), started)
      .set(keys.progress(id), { progress: 0, at: opts.now })
      .set(keys.lease(), {
        owner: opts.owner,
        jobId: id,
        startedAt: opts.now,
        expiresAt: opts.now + opts.leaseMs,
      })
      .commit();
    if (res.ok) return started;
  }
}

/**
 * Hands the running job back to the queue at its place (a graceful stop): the
 * attempt is not counted against it.
 */
export async function handBack(
  kv: Deno.Kv,
  owner: string,
  jobId: string,
  now: number,
): Promise<void> {
  const lease = await kv.get<Lease>(keys.lease());
  if (!lease.value || !ownsLease(lease.value, owner, jobId)) return;
  await returnToQueue(kv, lease as Deno.KvEntry<Lease>, now, 0, true);
}

/**
 * Puts a lease's job back at its place in line with its progress at 0, or
 * fails it after {@link MAX_ATTEMPTS} starts (an expired lease: its worker died).
 */
async function returnToQueue(
  kv: Deno.Kv,
  lease: Deno.KvEntry<Lease>,
  now: number,
  retentionMs: number,
  refund: boolean,
): Promise<void> {
  const { jobId } = lease.value;
  const [job, depth] = await kv.getMany<[JobRecord, number]>([
    keys.job(jobId),
    keys.depth(),
  ]);
  const op = kv.atomic().check(lease, job, depth).delete(keys.lease());
  const record = job.value;
  if (record?.status === "processing") {
    if (!refund && record.attempts >= MAX_ATTEMPTS) {
      finalize(op, record, now, retentionMs, {
        status: "failed",
        error: {
          code: "model_crashed",
          message:
            `The model stopped while working on this image ${record.attempts} times; it was not tried again.`,
        },
      });
    } else {
      const attempts = refund ? record.attempts - 1 : record.attempts;
      op.set(keys.job(jobId), {
        ...record,
        status: "queued",
        startedAt: null,
        attempts,
      })
        .set(keys.pending(record.createdAt, jobId), jobId)
        .set(keys.depth(), (depth.value ?? 0) + 1)
        .set(keys.progress(jobId), { progress: 0, at: now });
    }
  }
  await op.commit();
}

/** Outcome of a model heartbeat. */
export type TickResult = "ok" | "lost" | "cancelled";

/** Renews the lease and records progress; says when to stop instead. */
export async function tick(
  kv: Deno.Kv,
  opts: {
    owner: string;
    jobId: string;
    now: number;
    leaseMs: number;
    progress: number;
  },
): Promise<TickResult> {
  const [lease, job] = await kv.getMany<[Lease, JobRecord]>([
    keys.lease(),
    keys.job(opts.jobId),
  ]);
  if (!ownsLease(lease.value, opts.owner, opts.jobId)) return "lost";
  if (job.value?.status !== "processing") return "cancelled";
  const res = await kv.atomic().check(lease)
    .set(keys.lease(), { ...lease.value!, expiresAt: opts.now + opts.leaseMs })
    .set(keys.progress(opts.jobId), { progress: opts.progress, at: opts.now })
    .commit();
  return res.ok ? "ok" : "lost";
}

const ownsLease = (lease: Lease | null, owner: string, jobId: string) =>
  lease !== null && lease.owner === owner && lease.jobId === jobId;

/**
 * Ends the job the owner runs (`done` with its video, or `failed`) and frees
 * the slot. A job cancelled meanwhile stays cancelled; false if the lease was
 * lost or the job was no longer running.
 */
export async function finishJob(
  kv: Deno.Kv,
  opts: {
    owner: string;
    jobId: string;
    now: number;
    retentionMs: number;
    result: { video: VideoInfo } | { error: JobError };
  },
): Promise<boolean> {
  for (;;) {
    const [lease, job] = await kv.getMany<[Lease, JobRecord]>([
      keys.lease(),
      keys.job(opts.jobId),
    ]);
    if (!ownsLease(lease.value, opts.owner, opts.jobId)) return false;
    const op = kv.atomic().check(lease, job).delete(keys.lease());
    const running = job.value?.status === "processing";
    if (running) {
      finalize(
        op,
        job.value!,
        opts.now,
        opts.retentionMs,
        "video" in opts.result
          ? { status: "done", video: opts.result.video }
          : { status: "failed", error: opts.result.error },
      );
    }
    if ((await op.commit()).ok) return running;
  }
}

/** Frees the slot without touching the job (after a cancel). */
export async function releaseLease(
  kv: Deno.Kv,
  owner: string,
  jobId: string,
): Promise<void> {
  const lease = await kv.get<Lease>(keys.lease());
  if (!ownsLease(lease.value, owner, jobId)) return;
  await kv.atomic().check(lease).delete(keys.lease()).commit();
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

/** Adds the writes that end a job: final record, expiry, counters. */
function finalize(
  op: Deno.AtomicOperation,
  job: JobRecord,
  now: number,
  retentionMs: number,
  end: Pick<JobRecord, "status"> & Partial<Pick<JobRecord, "video" | "error">>,
): JobRecord {
  const final: JobRecord = { ...job, ...end, finishedAt: now };
  const expireIn = retentionMs;
  // expireIn is the backstop; the retention sweep deletes on time, files too.
  op.set(keys.job(job.id), final, { expireIn })
    .set(keys.sessionJob(job.session, job.id), job.id, { expireIn })
    .set(keys.finished(now, job.id), job.id, { expireIn })
    .sum(keys.stat(`jobs_${end.status}`), 1n);
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
