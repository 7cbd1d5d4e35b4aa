/**
 * The API's Job JSON (API.md), computed from KV so that every process and a
 * restart give the same answer: position from the pending keys (the fair
 * order, `_line.ts`), ETA from the position, the model time and what is left
 * of the running job.
 */
import type { ApiJob } from "../shared/api.ts";
import type { LineLogEntry } from "./_line.ts";
import type { JobRecord, Progress } from "./jobs.ts";
import { keys } from "./keys.ts";
import type { Lease } from "./lease.ts";

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
  current: Lease | null;
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

  constructor(private readonly kv: Deno.Kv) {}

  /**
   * Depth, the running job's lease and, unless `positions` is false, every
   * waiting job's position.
   */
  async state(positions = true): Promise<QueueState> {
    const [depth, lease, log] = await this.kv.getMany<
      [number, Lease, number]
    >([keys.depth(), keys.lease(), keys.lineMeta("log")]);
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
      current: lease.value,
    };
  }

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
 * The API view of a job.
 *
 * ETA: queued = what is left of the running job + position × model time;
 * processing = model time − elapsed.
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
  if (job.status === "queued") {
    position = ctx.queue.positions.get(job.id) ?? ctx.queue.depth;
    etaSeconds = Math.ceil(
      (remainingMs(ctx.queue.current, ctx.modelMs, ctx.now) +
        position * ctx.modelMs) / 1000,
    );
  } else if (job.status === "processing") {
    progress = Math.min(99, ctx.progress?.progress ?? 0);
    const started = job.startedAt ?? ctx.now;
    etaSeconds = Math.ceil(
      Math.max(0, started + ctx.modelMs - ctx.now) / 1000,
    );
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
