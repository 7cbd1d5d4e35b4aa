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
import {
  type ClientLine,
  clientOf,
  countSession,
  currentRound,
  dropFromClient,
  isLegacy,
  legacyPlace,
  LineChange,
  listClient,
  type Place,
  writeClient,
} from "./_line.ts";
import { getAll } from "./_kv.ts";
import { addDataBytes, countedBytes, signedBytes } from "./data_bytes.ts";
import { keys } from "./keys.ts";

export { clientOf, migrateLegacyLine, UNKNOWN_CLIENT } from "./_line.ts";

/** What KV stores for a job (epoch ms times); the API view is built from it. */
export interface JobRecord {
  id: string;
  session: string;
  /**
   * The client address key (`routes/client_address.ts`) the job counts
   * against and takes its turn as. Absent in records written before the fair
   * order: read it with `clientOf`.
   */
  client: string;
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
  /** Its place in line when the model took it, to go back to if handed back. */
  place?: Place;
  /**
   * Ended `failed` or `cancelled` with its image kept for a retry (absent in
   * records that ended before images were kept: theirs are gone).
   */
  imageKept?: boolean;
}

/** The caps an upload is checked against, in its own commit. */
export interface WaitingLimits {
  maxQueue: number;
  maxWaitingPerSession: number;
  maxWaitingPerClient: number;
  /** `DATA_MAX_BYTES`: the image may not take the kept bytes past it. */
  maxDataBytes?: number;
}

/** Why {@link createJob} refused, or where the job went. */
export type CreateResult =
  | { ok: true; place: Place }
  | { ok: false; reason: "queue_full"; depth: number }
  | {
    ok: false;
    reason: "too_many_waiting";
    /** Which cap: the session's own, or its address's. */
    scope: "session" | "client";
  }
  | { ok: false; reason: "insufficient_storage"; dataBytes: number }
  /** A retry whose original job changed, went, or was retried meanwhile. */
  | { ok: false; reason: "not_retryable" };

/**
 * A retry's original (`createJob`'s `retryOf`): the commit that creates the
 * new job also checks that this record is unchanged and not yet retried,
 * and marks it retried, so one job is retried at most once.
 */
export interface RetryOf {
  id: string;
  /** The original record's versionstamp as read. */
  versionstamp: string;
  /** When the mark goes (the original's own expiry), ms from now. */
  expireIn: number;
}

/** How many jobs a session and a client address have waiting. */
export interface WaitingCounts {
  session: number;
  client: number;
}

/**
 * The waiting counts the caps apply to, in one read: a cheap check before an
 * upload's body is read (the commit checks again, exactly).
 */
export async function waitingCounts(
  kv: Deno.Kv,
  client: string,
  session: string,
): Promise<WaitingCounts> {
  const [line, mine] = await kv.getMany<[ClientLine, number]>([
    keys.lineClient(client),
    keys.waitingSession(session),
  ]);
  return { session: mine.value ?? 0, client: waitingOf(line.value) };
}

const waitingOf = (line: ClientLine | null) =>
  line?.sessions.reduce((n, [, k]) => n + k, 0) ?? 0;

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

/**
 * Stores a new job and its place in the fair order (`_line.ts`), counts its
 * image's bytes and rings the queue, in one commit, unless `maxQueue` jobs
 * already wait, its session or address has its most jobs waiting, or its
 * image would take the kept bytes past `maxDataBytes`. The commit checks the depth
 * key and the counters it read, so the caps are exact across processes;
 * within one process creations take turns, so that concurrent uploads do not
 * all retry against each other. A bare number is `maxQueue` alone.
 */
export function createJob(
  kv: Deno.Kv,
  job: JobRecord,
  limits: number | WaitingLimits,
  retryOf?: RetryOf,
): Promise<CreateResult> {
  const caps = typeof limits === "number"
    ? {
      maxQueue: limits,
      maxWaitingPerSession: Infinity,
      maxWaitingPerClient: Infinity,
    }
    : limits;
  const run = (creating.get(kv) ?? Promise.resolve()).then(() =>
    commitJob(kv, job, caps, retryOf)
  );
  creating.set(kv, run.catch(() => {}));
  return run;
}

async function commitJob(
  kv: Deno.Kv,
  job: JobRecord,
  caps: WaitingLimits,
  retryOf?: RetryOf,
): Promise<CreateResult> {
  const client = clientOf(job);
  for (;;) {
    const original = retryOf
      ? await kv.getMany<[JobRecord, string]>([
        keys.job(retryOf.id),
        keys.retried(retryOf.id),
      ])
      : null;
    if (
      original &&
      (original[0].versionstamp !== retryOf!.versionstamp ||
        original[1].versionstamp !== null)
    ) {
      return { ok: false, reason: "not_retryable" };
    }
    const [depth, lineEntry, mine, seq, served, log, data] = await kv.getMany<
      [number, ClientLine, number, number, number, number, Deno.KvU64]
    >([
      keys.depth(),
      keys.lineClient(client),
      keys.waitingSession(job.session),
      keys.lineMeta("seq"),
      keys.lineMeta("round"),
      keys.lineMeta("log"),
      keys.dataBytes(),
    ]);
    const waiting = depth.value ?? 0;
    if (waiting >= caps.maxQueue) {
      return { ok: false, reason: "queue_full", depth: waiting };
    }
    if ((mine.value ?? 0) >= caps.maxWaitingPerSession) {
      return { ok: false, reason: "too_many_waiting", scope: "session" };
    }
    if (waitingOf(lineEntry.value) >= caps.maxWaitingPerClient) {
      return { ok: false, reason: "too_many_waiting", scope: "client" };
    }
    const kept = signedBytes(data);
    if (kept + job.image.bytes > (caps.maxDataBytes ?? Infinity)) {
      return { ok: false, reason: "insufficient_storage", dataBytes: kept };
    }
    const op = kv.atomic().check(depth, lineEntry, mine, seq, served, data);
    if (original && retryOf) {
      op.check(...original).set(keys.retried(retryOf.id), job.id, {
        expireIn: Math.max(1, retryOf.expireIn),
      });
    }
    addDataBytes(op, job.image.bytes);
    let line = lineEntry.value;
    const before = line ? await listClient(kv, client) : [];
    if (!line) {
      // A newcomer: the round now served, after every client already in it.
      const n = (seq.value ?? 0) + 1;
      op.set(keys.lineMeta("seq"), n);
      line = { seq: n, base: await currentRound(kv, served), sessions: [] };
    }
    const change = new LineChange(op);
    const mineNow = {
      id: job.id,
      session: job.session,
      createdAt: job.createdAt,
      place: null,
    };
    writeClient(op, change, client, line, [...before, mineNow]);
    change.log(log);
    countSession(op, mine, job.session, 1);
    const res = await op
      .set(keys.job(job.id), job)
      .set(keys.sessionJob(job.session, job.id), job.id)
      .set(keys.depth(), waiting + 1)
      .enqueue({ id: job.id })
      .commit();
    if (res.ok) {
      const [round, s] = change.put.find(([, , id]) => id === job.id)!;
      return { ok: true, place: [round, s] };
    }
  }
}

/**
 * The id of an ended job's final event (its final record's versionstamp,
 * as `hub.ts` sends it), or null while the job has not ended.
 */
export async function finalEventId(
  kv: Deno.Kv,
  id: string,
): Promise<string | null> {
  const entry = await kv.get<JobRecord>(keys.job(id));
  return entry.value && FINAL_STATUSES.has(entry.value.status)
    ? entry.versionstamp
    : null;
}

/** A job's record with its versionstamp (for a commit checked against it). */
export async function getJobEntry(
  kv: Deno.Kv,
  id: string,
): Promise<Deno.KvEntryMaybe<JobRecord>> {
  return await kv.get<JobRecord>(keys.job(id));
}

/**
 * Whether a job can be tried again (API.md, `POST /api/jobs/{id}/retry`): it
 * failed or was cancelled and its image is still kept. (Whether it was
 * retried already is checked in the retry's own commit.)
 */
export const isRetryable = (job: JobRecord): boolean =>
  (job.status === "failed" || job.status === "cancelled") &&
  job.imageKept === true;

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

/** A page of every session's jobs (the operators' list). */
export interface JobPage {
  jobs: JobRecord[];
  /** Where the next page starts; null once the end was reached. */
  cursor: string | null;
}

/**
 * How many records one page may read when a status filter skips most of
 * them: a page stops there with a cursor, so a request costs at most this
 * many reads and holds at most `limit` jobs, however many jobs are kept.
 */
export const ALL_JOBS_SCAN_MAX = 1000;

/**
 * Every session's jobs, newest first (job ids sort by creation time, so the
 * job prefix read backwards is the order), `limit` at a time from `cursor`,
 * only those with `status` when given.
 */
export async function listAllJobs(
  kv: Deno.Kv,
  opts: { status?: JobStatus; limit: number; cursor?: string },
): Promise<JobPage> {
  const jobs: JobRecord[] = [];
  const iter = kv.list<JobRecord>({ prefix: keys.jobAll() }, {
    reverse: true,
    cursor: opts.cursor,
    batchSize: Math.min(500, opts.status ? ALL_JOBS_SCAN_MAX : opts.limit + 1),
  });
  let scanned = 0;
  for await (const entry of iter) {
    if (!opts.status || entry.value.status === opts.status) {
      jobs.push(entry.value);
    }
    if (jobs.length >= opts.limit || ++scanned >= ALL_JOBS_SCAN_MAX) {
      // More may follow (the next page may also be empty): the cursor
      // points just after this entry.
      return { jobs, cursor: iter.cursor };
    }
  }
  return { jobs, cursor: null };
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
      await leaveLine(kv, op, job.value);
      op.set(keys.depth(), Math.max(0, (depth.value ?? 1) - 1));
    }
    const cancelled = finalize(op, job.value, now, retentionMs, {
      status: "cancelled",
    });
    if ((await op.commit()).ok) return cancelled;
  }
}

/** What {@link discardJob} did. */
export type Discarded =
  | { ended: "cancelled"; job: JobRecord }
  | { ended: "deleted"; job: JobRecord };

/**
 * `DELETE` of a job (API.md): cancels it while it is queued or running, or
 * deletes an ended one (`done`, `failed`, `cancelled`): its record, its
 * places in the indexes, its retry mark and its kept bytes, in one commit
 * checked against the record as read. The state at that commit decides: a
 * job that ends while the cancel is tried is deleted instead, so the caller
 * never finds it running afterwards. The files go after the commit
 * (`Store.removeJob`); a crash between leaves files no job counts, for the
 * orphan sweep. Null when there is no such job.
 */
export async function discardJob(
  kv: Deno.Kv,
  id: string,
  now: number,
  retentionMs: number,
): Promise<Discarded | null> {
  for (;;) {
    const job = await kv.get<JobRecord>(keys.job(id));
    if (!job.value) return null;
    if (!FINAL_STATUSES.has(job.value.status)) {
      const cancelled = await cancelJob(kv, id, now, retentionMs);
      if (cancelled === null) return null;
      if (cancelled !== "final") return { ended: "cancelled", job: cancelled };
      continue; // it ended meanwhile: delete it
    }
    const record = job.value;
    const op = kv.atomic().check(job)
      .delete(keys.job(id))
      .delete(keys.sessionJob(record.session, id))
      .delete(keys.progress(id))
      .delete(keys.retried(id));
    if (record.finishedAt !== null) {
      op.delete(keys.finished(record.finishedAt, id));
    }
    addDataBytes(op, -countedBytes(record));
    if ((await op.commit()).ok) return { ended: "deleted", job: record };
  }
}

/**
 * Adds to `op` the writes that take a queued job out of line (a cancel): its
 * key and its place in its client's counts. No other key moves, so every
 * position behind it drops by one and none grows; the client's own order is
 * recomputed at its next upload. Old records (no client) only lose their key.
 */
async function leaveLine(
  kv: Deno.Kv,
  op: Deno.AtomicOperation,
  job: JobRecord,
): Promise<void> {
  const client = clientOf(job);
  const mineKey = keys.lineJob(client, job.session, job.createdAt, job.id);
  const [log, line, mine, place] = await kv.getMany<
    [number, ClientLine, number, Place]
  >([
    keys.lineMeta("log"),
    keys.lineClient(client),
    keys.waitingSession(job.session),
    mineKey,
  ]);
  const change = new LineChange(op);
  if (isLegacy(job) || !place.value) {
    change.remove(legacyPlace(job), job.id);
    change.log(log);
    return;
  }
  op.check(line, mine, place).delete(mineKey);
  change.remove(place.value, job.id);
  change.log(log);
  countSession(op, mine, job.session, -1);
  if (line.value) dropFromClient(op, client, line.value, job.session);
}
