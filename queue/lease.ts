/**
 * The model slot and its lease: who may run the model, for which job, until
 * when. Only the holder of an unexpired lease runs the model; it renews the
 * lease while it works, and a lease that runs out (its worker died) puts the
 * job back in line. Every change is one atomic commit checked against the
 * lease it read.
 *
 * Each function names the lease it acts on by a {@link LeaseHolder} (or, for
 * a claim, the owner alone), so that a slot id can join the holder and the
 * lease key when the service grows several model slots, without changing
 * what callers pass around.
 */
import { finalize } from "./_finalize.ts";
import type { JobError } from "../shared/api.ts";
import {
  type ClientLine,
  clientOf,
  countSession,
  isLegacy,
  legacyPlace,
  LineChange,
  type Place,
  takeFromClient,
} from "./_line.ts";
import type { JobRecord, VideoInfo } from "./jobs.ts";
import { keys } from "./keys.ts";

/** The model slot. Only the holder of an unexpired lease runs the model. */
export interface Lease {
  owner: string;
  jobId: string;
  startedAt: number;
  expiresAt: number;
}

/** Who holds a lease, and for which job: what every lease change checks. */
export interface LeaseHolder {
  /** The worker's id. */
  owner: string;
  jobId: string;
}

/** A job is started at most this many times (crashes count) before it fails. */
export const MAX_ATTEMPTS = 3;

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
    const [job, depth, log] = await kv.getMany<[JobRecord, number, number]>([
      keys.job(id),
      keys.depth(),
      keys.lineMeta("log"),
    ]);
    const op = kv.atomic().check(lease, first, job, depth)
      .set(keys.depth(), Math.max(0, (depth.value ?? 1) - 1));
    const change = new LineChange(op);
    change.removeKey(first.key, id);
    change.log(log);
    if (!job.value || job.value.status !== "queued") {
      await op.commit(); // an orphan entry: drop it and look again
      continue;
    }
    // A fair key is ["pending", round, seq, id]; an old-shaped one has no seq.
    const place: Place = first.key.length === 4
      ? [first.key[1] as number, first.key[2] as number]
      : legacyPlace(job.value);
    if (!isLegacy(job.value)) {
      const [line, mine] = await kv.getMany<[ClientLine, number]>([
        keys.lineClient(clientOf(job.value)),
        keys.waitingSession(job.value.session),
      ]);
      op.check(line, mine);
      takeFromClient(op, line.value, job.value, place);
      countSession(op, mine, job.value.session, -1);
      if (place[0] >= 0) op.set(keys.lineMeta("round"), place[0]);
    }
    const started: JobRecord = {
      ...job.value,
      status: "processing",
      startedAt: opts.now,
      attempts: job.value.attempts + 1,
      place,
    };
    const res = await op
      .set(keys.job(id), started)
      .set(keys.progress(id), { progress: 0, at: opts.now })
      .set(
        keys.lease(),
        {
          owner: opts.owner,
          jobId: id,
          startedAt: opts.now,
          expiresAt: opts.now + opts.leaseMs,
        } satisfies Lease,
      )
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
  holder: LeaseHolder,
  now: number,
): Promise<void> {
  const lease = await kv.get<Lease>(keys.lease());
  if (!lease.value || !ownsLease(lease.value, holder)) return;
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
        .set(keys.depth(), (depth.value ?? 0) + 1)
        .set(keys.progress(jobId), { progress: 0, at: now });
      await rejoinLine(kv, op, record);
    }
  }
  await op.commit();
}

/**
 * Adds to `op` the writes that put a taken job back at its place: the key it
 * had when taken, its session at the front of its client's turn and the
 * client's base back at that round, which is where the client's line stood
 * before the job was taken. No other key moves.
 */
async function rejoinLine(
  kv: Deno.Kv,
  op: Deno.AtomicOperation,
  job: JobRecord,
): Promise<void> {
  const place = job.place ?? legacyPlace(job);
  const client = clientOf(job);
  const [log, line, mine] = await kv.getMany<[number, ClientLine, number]>([
    keys.lineMeta("log"),
    keys.lineClient(client),
    keys.waitingSession(job.session),
  ]);
  const change = new LineChange(op);
  change.add(place, job.id);
  change.log(log);
  if (isLegacy(job) || place[0] < 0) return;
  op.check(line, mine)
    .set(keys.lineJob(client, job.session, job.createdAt, job.id), place);
  countSession(op, mine, job.session, 1);
  const sessions = line.value?.sessions ?? [];
  const own = sessions.find(([s]) => s === job.session)?.[1] ?? 0;
  op.set(
    keys.lineClient(client),
    {
      seq: Math.min(line.value?.seq ?? place[1], place[1]),
      base: Math.min(line.value?.base ?? place[0], place[0]),
      sessions: [
        [job.session, own + 1],
        ...sessions.filter(([s]) => s !== job.session),
      ],
    } satisfies ClientLine,
  );
}

/**
 * What a renewal found: `ok` (go on), `lost` (another worker holds the slot
 * now) or `cancelled` (the job was cancelled; the lease is still held).
 */
export type LeaseRenewal = "ok" | "lost" | "cancelled";

/**
 * The running model's heartbeat: extends the lease by `leaseMs` from `now`
 * and records the job's progress in the same commit, or says why the model
 * should stop instead.
 */
export async function renewLease(
  kv: Deno.Kv,
  opts: LeaseHolder & { now: number; leaseMs: number; progress: number },
): Promise<LeaseRenewal> {
  const [lease, job] = await kv.getMany<[Lease, JobRecord]>([
    keys.lease(),
    keys.job(opts.jobId),
  ]);
  if (!ownsLease(lease.value, opts)) return "lost";
  if (job.value?.status !== "processing") return "cancelled";
  const res = await kv.atomic().check(lease)
    .set(keys.lease(), { ...lease.value!, expiresAt: opts.now + opts.leaseMs })
    .set(keys.progress(opts.jobId), { progress: opts.progress, at: opts.now })
    .commit();
  return res.ok ? "ok" : "lost";
}

const ownsLease = (lease: Lease | null, holder: LeaseHolder) =>
  lease !== null && lease.owner === holder.owner &&
  lease.jobId === holder.jobId;

/**
 * Ends the job the holder runs (`done` with its video, or `failed`) and frees
 * the slot. A job cancelled meanwhile stays cancelled; false if the lease was
 * lost or the job was no longer running.
 */
export async function finishJob(
  kv: Deno.Kv,
  opts: LeaseHolder & {
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
    if (!ownsLease(lease.value, opts)) return false;
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
  holder: LeaseHolder,
): Promise<void> {
  const lease = await kv.get<Lease>(keys.lease());
  if (!ownsLease(lease.value, holder)) return;
  await kv.atomic().check(lease).delete(keys.lease()).commit();
}
