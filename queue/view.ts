/**
 * The API's Job JSON (API.md), computed from KV so that every process and a
 * restart give the same answer: position from the pending keys (the fair
 * order, `_line.ts`), ETA from the position, the live model slots, the
 * recent average run time and what is left of the running jobs.
 */
import type { ApiJob } from "../shared/api.ts";
import type { LineLogEntry } from "./_line.ts";
import { type Clock, realClock } from "./clock.ts";
import type { JobRecord, Progress } from "./jobs.ts";
import { keys } from "./keys.ts";
import type { Lease } from "./lease.ts";
import type { SlotInfo } from "./models/adapter.ts";
import { liveSlots, readSlots } from "./slots.ts";

/**
 * One read shared by every caller that asks while it waits to start: a
 * caller never gets a read that began before it asked (so a caller sees its
 * own commits), and at most one read runs, with one more queued behind it.
 */
export class SharedRead<T> {
  #running: Promise<void> | null = null;
  #queued: Promise<T> | null = null;

  constructor(private readonly read: () => Promise<T>) {}

  get(): Promise<T> {
    if (this.#queued) return this.#queued;
    if (!this.#running) return this.#start();
    this.#queued = this.#running.then(() => this.#start());
    return this.#queued;
  }

  #start(): Promise<T> {
    this.#queued = null;
    const result = this.read();
    const running = result.then(() => {}, () => {});
    this.#running = running;
    running.then(() => {
      if (this.#running === running) this.#running = null;
    });
    return result;
  }
}

/** A waiting job's position (1 = next), if it waits. */
export interface Positions {
  get(id: string): number | undefined;
}

/** What the position and ETA of any job depend on. */
export interface QueueState {
  /** Changes whenever a job joins or leaves the line. */
  version: string | null;
  depth: number;
  positions: Positions;
  /** The running job that started first (ends first), or null. */
  current: Lease | null;
  /** Every running job's lease. */
  running: Lease[];
  /** Slots that take work (at least the busy ones); 0 when no worker is up. */
  liveSlots: number;
  /** The recent done runs' average time, or null before the first. */
  averageMs: number | null;
}

/** A pending key without its prefix: `[round, seq, id]`. */
type LineKey = LineLogEntry["put"][number];

const compare = (a: LineKey, b: LineKey) =>
  a[0] - b[0] || a[1] - b[1] || (a[2] < b[2] ? -1 : a[2] > b[2] ? 1 : 0);

/**
 * The log entries one catch-up reads at most; further behind, listing the
 * line again is as cheap.
 */
const CATCH_UP_MAX = 500;

/**
 * This process's copy of the line: the pending keys in order (at most
 * `MAX_QUEUE`) and each job's key, so that a position is a binary search.
 */
export class LineCopy implements Positions {
  #sorted: LineKey[] = [];
  #byId = new Map<string, LineKey>();

  get size(): number {
    return this.#sorted.length;
  }

  get(id: string): number | undefined {
    const key = this.#byId.get(id);
    return key ? this.#index(key) + 1 : undefined;
  }

  put(key: LineKey): void {
    this.del(key[2]);
    this.#sorted.splice(this.#index(key), 0, key);
    this.#byId.set(key[2], key);
  }

  del(id: string): void {
    const key = this.#byId.get(id);
    if (!key) return;
    this.#sorted.splice(this.#index(key), 1);
    this.#byId.delete(id);
  }

  apply(entry: LineLogEntry): void {
    for (const id of entry.del) this.del(id);
    for (const key of entry.put) this.put(key);
  }

  /** The first index whose key is not before `key`. */
  #index(key: LineKey): number {
    let lo = 0, hi = this.#sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compare(this.#sorted[mid], key) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/**
 * Keeps this process's copy of the line current however many jobs and
 * listeners ask: each call reads the depth, the lease and the log counter
 * (one `getMany`); when the log moved, it reads the few new log entries and
 * applies them (each a splice of a sorted array); only at the first call, or
 * when it fell further behind than the log keeps (`LOG_TTL_MS`), does
 * it list the pending keys. Memory is bounded by `MAX_QUEUE` keys.
 */
export class QueueView {
  #line = new LineCopy();
  /** The last log entry applied to #line; -1 before the first listing. */
  #applied = -1;
  #sync: Promise<void> | null = null;
  readonly #kind: SlotInfo["kind"];
  readonly #clock: Clock;

  constructor(
    private readonly kv: Deno.Kv,
    /** The model whose run times the ETA averages; the clock heartbeats are read by. */
    opts: { kind?: SlotInfo["kind"]; clock?: Clock } = {},
  ) {
    this.#kind = opts.kind ?? "simulated";
    this.#clock = opts.clock ?? realClock;
  }

  /**
   * Depth, the running jobs' leases, the live slots, the average run time
   * and, unless `positions` is false, every waiting job's position. Costs
   * one `getMany` and two lists of the slots (a few keys), never a list of
   * the line once this process's copy of it is made.
   */
  async state(positions = true): Promise<QueueState> {
    const { depth, log, times, slots, legacy } = await this.#head.get();
    const running = [...slots.leases.values(), ...(legacy ? [legacy] : [])]
      .sort((a, b) => a.startedAt - b.startedAt);
    if (positions) {
      while (this.#applied < (log.value ?? 0)) {
        this.#sync ??= this.#catchUp().finally(() => (this.#sync = null));
        await this.#sync;
      }
    }
    return {
      version: depth.versionstamp,
      depth: depth.value ?? 0,
      positions: positions ? this.#line : new Map(),
      current: running[0] ?? null,
      running,
      liveSlots: liveSlots(slots),
      averageMs: times.value?.length
        ? times.value.reduce((a, b) => a + b, 0) / times.value.length
        : null,
    };
  }

  /**
   * The keys every state is made of, read once for all the callers that ask
   * while one read waits to start (40 uploads at once share a few reads,
   * not 120), each answer read after its caller asked.
   */
  #head = new SharedRead(async () => {
    const [slots, [depth, log, times]] = await Promise.all([
      readSlots(this.kv, this.#clock.now()),
      this.kv.getMany<[number, number, number[]]>([
        keys.depth(),
        keys.lineMeta("log"),
        keys.runTimes(this.#kind),
      ]),
    ]);
    // A lease of a version before slots, until a worker reclaims it.
    const legacy = slots.leases.size === 0
      ? (await this.kv.get<Lease>(keys.lease())).value
      : null;
    return { depth, log, times, slots, legacy };
  });

  async #catchUp(): Promise<void> {
    if (this.#applied >= 0) {
      const entries = await Array.fromAsync(
        this.kv.list<LineLogEntry>({
          start: keys.lineLog(this.#applied + 1),
          end: keys.lineLog(Number.MAX_SAFE_INTEGER),
        }, { limit: CATCH_UP_MAX }),
      );
      const contiguous = entries.every((e, i) =>
        e.key[1] === this.#applied + 1 + i
      );
      if (entries.length > 0 && contiguous) {
        for (const e of entries) this.#line.apply(e.value);
        this.#applied += entries.length;
        return;
      }
    }
    await this.#rebuild();
  }

  /**
   * Lists the line whole. The log counter is read first: the listing may
   * already hold later changes, and replaying them again is harmless (each
   * entry sets or deletes a job's key outright).
   */
  async #rebuild(): Promise<void> {
    const log = (await this.kv.get<number>(keys.lineMeta("log"))).value ?? 0;
    const line = new LineCopy();
    for await (const e of this.kv.list<string>({ prefix: keys.pendingAll() })) {
      // Keys of the shape before the fair order sort by their time alone.
      const key: LineKey = e.key.length === 4
        ? [e.key[1] as number, e.key[2] as number, e.value]
        : [Number.MAX_SAFE_INTEGER, e.key[1] as number, e.value];
      line.put(key);
    }
    this.#line = line;
    this.#applied = log;
  }
}

/** Milliseconds until the running job is done, by the model's own schedule (0 when none runs). */
export function remainingMs(
  current: Lease | null,
  modelMs: number,
  now: number,
): number {
  if (!current) return 0;
  return Math.max(0, current.startedAt + modelMs - now);
}

/**
 * When each of the slots is free next, soonest first, in ms from `now`:
 * each running job takes `averageMs` from its start, and the other live
 * slots are free now. At least one slot, so that a line with no worker up
 * still gets an estimate.
 */
export function slotFreeTimes(
  queue: Pick<QueueState, "running" | "liveSlots">,
  averageMs: number,
  now: number,
): number[] {
  const busy = queue.running.map((l) => remainingMs(l, averageMs, now));
  const idle = Math.max(1, queue.liveSlots, busy.length) - busy.length;
  return [...busy, ...Array<number>(idle).fill(0)].sort((a, b) => a - b);
}

/**
 * Milliseconds until the job at `position` (1 = next) is done: slot `k`
 * runs jobs from its free time `free[k]` every `averageMs`. Each free time
 * lies within one run of now, so the starts in order are the slots' free
 * times round by round: the p-th start is `free[(p-1) mod S]` plus
 * `floor((p-1) / S)` runs. O(1) given the free times.
 */
export function queuedEtaMs(
  position: number,
  free: readonly number[],
  averageMs: number,
): number {
  const i = Math.max(0, position - 1);
  const s = free.length;
  return free[i % s] + Math.floor(i / s) * averageMs + averageMs;
}

/**
 * The API view of a job.
 *
 * ETA, with A the recent average run time (`modelMs` before any run):
 * queued = when the slot it will run on is free ({@link queuedEtaMs}) + A;
 * processing = A − elapsed.
 */
export function toApiJob(
  job: JobRecord,
  ctx: {
    queue: QueueState;
    progress: Progress | null;
    now: number;
    modelMs: number;
    video: { url: string; expiresAt: number } | null;
  },
): ApiJob {
  const iso = (t: number | null) =>
    t === null ? null : new Date(t).toISOString();
  let position: number | null = null;
  let etaSeconds: number | null = null;
  let progress = 0;
  const average = ctx.queue.averageMs ?? ctx.modelMs;
  if (job.status === "queued") {
    position = ctx.queue.positions.get(job.id) ?? ctx.queue.depth;
    etaSeconds = Math.ceil(
      queuedEtaMs(
        position,
        slotFreeTimes(ctx.queue, average, ctx.now),
        average,
      ) / 1000,
    );
  } else if (job.status === "processing") {
    progress = Math.min(99, ctx.progress?.progress ?? 0);
    const started = job.startedAt ?? ctx.now;
    etaSeconds = Math.ceil(Math.max(0, started + average - ctx.now) / 1000);
  } else if (job.status === "done") {
    progress = 100;
  }
  return {
    id: job.id,
    status: job.status,
    position,
    progress,
    etaSeconds,
    createdAt: iso(job.createdAt)!,
    startedAt: iso(job.startedAt),
    finishedAt: iso(job.finishedAt),
    image: {
      type: job.image.type,
      width: job.image.width,
      height: job.image.height,
      bytes: job.image.bytes,
    },
    video: job.status === "done" && ctx.video
      ? {
        url: ctx.video.url,
        type: "video/mp4",
        expiresAt: new Date(ctx.video.expiresAt).toISOString(),
      }
      : null,
    error: job.error,
  };
}
