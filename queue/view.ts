/**
 * The API's Job JSON (API.md), computed from KV so that every process and a
 * restart give the same answer: position from the pending keys, ETA from the
 * position, the model time and what is left of the running job.
 */
import type { ApiJob } from "../shared/api.ts";
import type { JobRecord, Progress } from "./jobs.ts";
import { keys } from "./keys.ts";
import type { Lease } from "./lease.ts";

/** What the position and ETA of any job depend on. */
export interface QueueState {
  /** Changes whenever a job joins or leaves the line. */
  version: string | null;
  depth: number;
  positions: ReadonlyMap<string, number>;
  current: Lease | null;
}

/**
 * Reads the line once per change, however many jobs and listeners ask: the
 * pending keys are listed again only when the depth key's versionstamp moved
 * (every queue change commits it). Memory is bounded by `MAX_QUEUE` ids.
 */
export class QueueView {
  #cached: Promise<QueueState> | null = null;
  #cachedVersion: string | null | undefined = undefined;

  constructor(private readonly kv: Deno.Kv) {}

  /**
   * Depth, the running job's lease and, unless `positions` is false, every
   * waiting job's position (one list of the pending keys per queue change).
   */
  async state(positions = true): Promise<QueueState> {
    const [depth, lease] = await this.kv.getMany<[number, Lease]>([
      keys.depth(),
      keys.lease(),
    ]);
    if (!positions) {
      return {
        version: depth.versionstamp,
        depth: depth.value ?? 0,
        positions: new Map(),
        current: lease.value,
      };
    }
    if (!this.#cached || this.#cachedVersion !== depth.versionstamp) {
      this.#cachedVersion = depth.versionstamp;
      this.#cached = this.#list(depth);
      this.#cached.catch(() => (this.#cached = null));
    }
    const state = await this.#cached;
    return { ...state, current: lease.value };
  }

  async #list(depth: Deno.KvEntryMaybe<number>): Promise<QueueState> {
    const positions = new Map<string, number>();
    for await (const e of this.kv.list<string>({ prefix: keys.pendingAll() })) {
      positions.set(e.value, positions.size + 1);
    }
    return {
      version: depth.versionstamp,
      depth: depth.value ?? 0,
      positions,
      current: null,
    };
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
