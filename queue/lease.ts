/**
 * Model slots and their leases (DESIGN.md, "Slots, not one lease"): who runs
 * which job on which slot, until when. Each slot is a KV key of its own
 * (`["slot", id]`); a worker takes the first pending job *and* a free slot in
 * one atomic commit, so any number of workers share any number of slots and
 * two workers offering the same slot never run two jobs on it. Only the
 * holder of an unexpired lease runs the model on that slot; it renews the
 * lease while it works, and a lease that runs out (its worker died) puts the
 * job back in line, whichever worker notices first: every change is one
 * atomic commit checked against the lease it read.
 *
 * Each function names the lease it acts on by a {@link LeaseHolder}: the
 * owner, the job and the slot ({@link DEFAULT_SLOT} when not named, the one
 * slot of the tests written before slots).
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
import type { SlotInfo } from "./models/adapter.ts";

/** A model slot's lease. Only the holder of an unexpired lease runs the model. */
export interface Lease {
  owner: string;
  jobId: string;
  startedAt: number;
  expiresAt: number;
  /** The slot's id and kind (absent in a lease written before slots). */
  slot?: string;
  kind?: SlotInfo["kind"];
}

/** Who holds a lease, for which job, on which slot: what every lease change checks. */
export interface LeaseHolder {
  /** The worker's id. */
  owner: string;
  jobId: string;
  /** The slot's id; {@link DEFAULT_SLOT} when not given. */
  slot?: string;
}

/** The slot of a caller that names none (one model, as before slots). */
export const DEFAULT_SLOT = "model";
/** Done runs kept per model kind for the average run time (`etaSeconds`). */
export const RUN_TIMES_KEPT = 20;
/** Busy spans kept per slot for its utilisation (`slots.ts`). */
export const USAGE_SPANS_KEPT = 100;

/** A slot's recent busy spans, oldest first (`keys.slotUsage`). */
export interface SlotUsage {
  spans: [start: number, end: number][];
}

/** A job is started at most this many times (crashes count) before it fails. */
export const MAX_ATTEMPTS = 3;

/**
 * A dead worker's job taken back from its expired lease: back in line, or
 * failed with `model_crashed` after {@link MAX_ATTEMPTS} (for the logs).
 */
export interface Reclaimed {
  jobId: string;
  outcome: "requeued" | "failed";
  /** Starts so far. */
  attempts: number;
  /** The dead worker's slot. */
  slot?: string;
}

/**
 * When a lease runs out next: `slot`'s, or with no slot named the earliest
 * of every slot's (a dead worker's slot is noticed by any worker); null when
 * none is held.
 */
export async function leaseExpiry(
  kv: Deno.Kv,
  slot?: string,
): Promise<number | null> {
  if (slot !== undefined) {
    return (await kv.get<Lease>(keys.slot(slot))).value?.expiresAt ?? null;
  }
  let first: number | null = null;
  for (const { value } of await allLeases(kv)) {
    if (first === null || value.expiresAt < first) first = value.expiresAt;
  }
  return first;
}

/** Every slot's lease, and the lease of a version before slots if one is left. */
async function allLeases(kv: Deno.Kv): Promise<Deno.KvEntry<Lease>[]> {
  const out = await Array.fromAsync(
    kv.list<Lease>({ prefix: keys.slotAll() }),
  );
  const legacy = await kv.get<Lease>(keys.lease());
  if (legacy.value) out.push(legacy as Deno.KvEntry<Lease>);
  return out;
}

/**
 * Puts the jobs of every expired lease (their workers died) back in line,
 * or fails them after {@link MAX_ATTEMPTS}. Any worker may call it: each
 * lease is returned by one commit checked against it, so a job is taken up
 * again exactly once. Reads the slot leases only (a few keys).
 */
export async function reclaimExpired(
  kv: Deno.Kv,
  now: number,
  retentionMs: number,
  onReclaimed?: (r: Reclaimed) => void,
): Promise<number> {
  let returned = 0;
  for (const lease of await allLeases(kv)) {
    if (lease.value.expiresAt > now) continue;
    if (await returnToQueue(kv, lease, now, retentionMs, false, onReclaimed)) {
      returned++;
    }
  }
  return returned;
}

/**
 * Takes the first waiting job for `owner` on `slot`, or returns null when
 * that slot is held by an unexpired lease or nothing waits. Expired leases
 * of any slot (their workers died) first put their jobs back in line, or
 * fail them after {@link MAX_ATTEMPTS}.
 */
export async function claimNext(
  kv: Deno.Kv,
  opts: {
    owner: string;
    /** The slot to run it on; {@link DEFAULT_SLOT} when not given. */
    slot?: string;
    kind?: SlotInfo["kind"];
    now: number;
    leaseMs: number;
    retentionMs: number;
    /** Told of each dead worker's job taken back on the way. */
    onReclaimed?: (r: Reclaimed) => void;
  },
): Promise<JobRecord | null> {
  const slot = opts.slot ?? DEFAULT_SLOT;
  await reclaimExpired(kv, opts.now, opts.retentionMs, opts.onReclaimed);
  for (;;) {
    const lease = await kv.get<Lease>(keys.slot(slot));
    if (lease.value && lease.value.expiresAt > opts.now) return null;
    if (lease.value) {
      await returnToQueue(
        kv,
        lease as Deno.KvEntry<Lease>,
        opts.now,
        opts.retentionMs,
        false,
        opts.onReclaimed,
      );
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
        keys.slot(slot),
        {
          owner: opts.owner,
          jobId: id,
          startedAt: opts.now,
          expiresAt: opts.now + opts.leaseMs,
          slot,
          kind: opts.kind ?? "simulated",
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
  for (;;) {
    const lease = await kv.get<Lease>(slotKey(holder));
    if (!lease.value || !ownsLease(lease.value, holder)) return;
    if (await returnToQueue(kv, lease as Deno.KvEntry<Lease>, now, 0, true)) {
      return;
    }
  }
}

const slotKey = (holder: Pick<LeaseHolder, "slot">) =>
  keys.slot(holder.slot ?? DEFAULT_SLOT);

/**
 * Adds to `op` the end of a lease: the slot's key goes, and its busy span
 * joins the slot's recent usage (`usage` as read, checked). A lease of a
 * version before slots has no usage.
 */
function endLease(
  op: Deno.AtomicOperation,
  lease: Deno.KvEntry<Lease>,
  usage: Deno.KvEntryMaybe<SlotUsage> | null,
  now: number,
): void {
  op.delete(lease.key);
  const slot = lease.value.slot;
  if (!usage || slot === undefined) return;
  const spans = [
    ...(usage.value?.spans ?? []),
    [lease.value.startedAt, Math.max(lease.value.startedAt, now)],
  ].slice(-USAGE_SPANS_KEPT) as SlotUsage["spans"];
  op.check(usage).set(keys.slotUsage(slot), { spans } satisfies SlotUsage);
}

/** The usage entry of a lease's slot, or null for a lease without a slot. */
const usageOf = (kv: Deno.Kv, lease: Lease) =>
  lease.slot === undefined
    ? Promise.resolve(null)
    : kv.get<SlotUsage>(keys.slotUsage(lease.slot));

/**
 * Puts a lease's job back at its place in line with its progress at 0, or
 * fails it after {@link MAX_ATTEMPTS} starts (an expired lease: its worker
 * died). False when the lease changed meanwhile (someone else returned it).
 */
async function returnToQueue(
  kv: Deno.Kv,
  lease: Deno.KvEntry<Lease>,
  now: number,
  retentionMs: number,
  refund: boolean,
  onReclaimed?: (r: Reclaimed) => void,
): Promise<boolean> {
  const { jobId } = lease.value;
  const [job, depth] = await kv.getMany<[JobRecord, number]>([
    keys.job(jobId),
    keys.depth(),
  ]);
  const op = kv.atomic().check(lease, job, depth);
  endLease(op, lease, await usageOf(kv, lease.value), now);
  const record = job.value;
  let outcome: Reclaimed["outcome"] | null = null;
  if (record?.status === "processing") {
    outcome = !refund && record.attempts >= MAX_ATTEMPTS
      ? "failed"
      : "requeued";
    if (outcome === "failed") {
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
  const ok = (await op.commit()).ok;
  if (ok && outcome && record) {
    onReclaimed?.({
      jobId,
      outcome,
      attempts: record.attempts,
      slot: lease.value.slot,
    });
  }
  return ok;
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
    slotKey(opts),
    keys.job(opts.jobId),
  ]);
  if (!ownsLease(lease.value, opts)) return "lost";
  if (job.value?.status !== "processing") return "cancelled";
  const res = await kv.atomic().check(lease)
    .set(slotKey(opts), { ...lease.value!, expiresAt: opts.now + opts.leaseMs })
    .set(keys.progress(opts.jobId), { progress: opts.progress, at: opts.now })
    .commit();
  return res.ok ? "ok" : "lost";
}

/**
 * Extends the holder's lease whatever became of its job: the slot stays held
 * while a model that was told to stop (cancel, timeout, graceful stop) is
 * still stopping, so that no other job starts on it meanwhile. False when
 * the lease was lost.
 */
export async function extendLease(
  kv: Deno.Kv,
  opts: LeaseHolder & { now: number; leaseMs: number },
): Promise<boolean> {
  const lease = await kv.get<Lease>(slotKey(opts));
  if (!ownsLease(lease.value, opts)) return false;
  const res = await kv.atomic().check(lease)
    .set(slotKey(opts), { ...lease.value!, expiresAt: opts.now + opts.leaseMs })
    .commit();
  return res.ok;
}

const ownsLease = (lease: Lease | null, holder: LeaseHolder) =>
  lease !== null && lease.owner === holder.owner &&
  lease.jobId === holder.jobId;

/**
 * Ends the job the holder runs (`done` with its video, or `failed`) and frees
 * the slot. A done run's time (from the claim) joins its model kind's recent
 * run times in the same commit. A job cancelled meanwhile stays cancelled;
 * false if the lease was lost or the job was no longer running.
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
      slotKey(opts),
      keys.job(opts.jobId),
    ]);
    if (!ownsLease(lease.value, opts)) return false;
    const held = lease as Deno.KvEntry<Lease>;
    const op = kv.atomic().check(held, job);
    endLease(op, held, await usageOf(kv, held.value), opts.now);
    const running = job.value?.status === "processing";
    if (running && "video" in opts.result) {
      const kind = held.value.kind ?? "simulated";
      const times = await kv.get<number[]>(keys.runTimes(kind));
      op.check(times).set(
        keys.runTimes(kind),
        [
          ...(times.value ?? []),
          Math.max(0, opts.now - held.value.startedAt),
        ].slice(-RUN_TIMES_KEPT),
      );
    }
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

/**
 * Frees the slot without touching the job (after a cancel); with `now`, the
 * time it was held counts as busy in the slot's usage.
 */
export async function releaseLease(
  kv: Deno.Kv,
  holder: LeaseHolder,
  now?: number,
): Promise<void> {
  for (;;) {
    const lease = await kv.get<Lease>(slotKey(holder));
    if (!ownsLease(lease.value, holder)) return;
    const held = lease as Deno.KvEntry<Lease>;
    const op = kv.atomic().check(held);
    if (now === undefined) op.delete(held.key);
    else endLease(op, held, await usageOf(kv, held.value), now);
    if ((await op.commit()).ok) return;
  }
}
