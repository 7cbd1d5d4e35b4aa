/**
 * Test doubles: a clock that moves only when told, an encoder that does not
 * encode, a model whose runs end when the test says.
 */
import type {
  ClipRequest,
  Encoder,
  TranscodeRequest,
  WarmTranscoder,
} from "../media/clip.ts";
import { EncodeError } from "../media/clip.ts";
import type { Clock } from "../queue/clock.ts";

interface Sleeper {
  at: number;
  resolve: () => void;
}

/**
 * A clock whose time moves only by {@link FakeClock.advance}. Tests wait for
 * the code under test to go to sleep (an event, not a timer) and then move
 * time on.
 */
export class FakeClock implements Clock {
  #now: number;
  #sleepers = new Set<Sleeper>();
  #waiters: (() => void)[] = [];

  constructor(start = Date.UTC(2026, 10, 24, 12)) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const sleeper: Sleeper = {
        at: this.#now + ms,
        resolve: () => {
          this.#sleepers.delete(sleeper);
          resolve();
        },
      };
      signal?.addEventListener("abort", sleeper.resolve, { once: true });
      this.#sleepers.add(sleeper);
      for (const w of this.#waiters.splice(0)) w();
    });
  }

  /** How many sleeps are pending. */
  get sleeping(): number {
    return this.#sleepers.size;
  }

  /** Resolves once at least `n` sleeps are pending. */
  async untilSleeping(n = 1): Promise<void> {
    while (this.#sleepers.size < n) {
      await new Promise<void>((r) => this.#waiters.push(r));
    }
  }

  /** Moves time to the earliest pending wake-up and wakes it; returns the step. */
  wakeNext(): number {
    const next = [...this.#sleepers].sort((a, b) => a.at - b.at)[0];
    if (!next) throw new Error("nothing is sleeping");
    const step = Math.max(0, next.at - this.#now);
    this.#now = Math.max(this.#now, next.at);
    for (const s of [...this.#sleepers]) if (s.at <= this.#now) s.resolve();
    return step;
  }

  /** Moves time on by `ms`, waking every sleep that falls due. */
  advance(ms: number): void {
    this.#now += ms;
    for (const s of [...this.#sleepers]) if (s.at <= this.#now) s.resolve();
  }
}

/**
 * An encoder that writes a few bytes instead of a video. Each call can be
 * held open with {@link FakeEncoder.hold} to see what overlaps what.
 */
export class FakeEncoder implements Encoder {
  calls: ClipRequest[] = [];
  transcodes: TranscodeRequest[] = [];
  running = 0;
  maxRunning = 0;
  fail: EncodeError | null = null;
  /**
   * The transcoders started ahead ({@link warmTranscoder}), in order: whether
   * each did the transcode, and whether it has ended (used, closed or aborted).
   */
  warm: { used: boolean; ended: boolean }[] = [];
  #held: (() => void)[] | null = null;

  hold(): void {
    this.#held = [];
  }

  release(): void {
    for (const r of this.#held?.splice(0) ?? []) r();
    this.#held = null;
  }

  makeClip(req: ClipRequest): Promise<void> {
    this.calls.push(req);
    return this.#encode(req);
  }

  /** As {@link makeClip}: the model's video is not read, the fixture is copied. */
  transcode(req: TranscodeRequest): Promise<void> {
    this.transcodes.push(req);
    return this.#encode(req);
  }

  /** Counts as an encoder running from its start until it has ended. */
  warmTranscoder(
    opts: { writeDir: string; signal?: AbortSignal },
  ): WarmTranscoder {
    const state = { used: false, ended: false };
    this.warm.push(state);
    this.running++;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    const end = () => {
      if (state.ended) return;
      state.ended = true;
      this.running--;
    };
    opts.signal?.addEventListener("abort", end, { once: true });
    if (opts.signal?.aborted) end();
    return {
      pid: -1,
      transcode: async (req) => {
        if (state.used || state.ended) throw new Error("warm transcoder ended");
        state.used = true;
        this.transcodes.push(req);
        this.running--; // #encode counts it again
        try {
          await this.#encode(req);
        } finally {
          this.running++;
          end();
        }
      },
      close: () => Promise.resolve(end()),
    };
  }

  async #encode(req: TranscodeRequest): Promise<void> {
    this.running++;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    try {
      if (this.#held) {
        const held = this.#held;
        await new Promise<void>((resolve, reject) => {
          held.push(resolve);
          req.signal?.addEventListener(
            "abort",
            () =>
              reject(
                new EncodeError("encode_aborted", "The job was cancelled."),
              ),
            { once: true },
          );
        });
      }
      if (this.fail) throw this.fail;
      // A real (fragmented) MP4 for both outputs, so that what follows
      // (CENC packaging, byte ranges, playback) runs on real bytes.
      const clip = new URL("./fixtures/clip.frag.mp4", import.meta.url);
      await Deno.copyFile(clip, req.output);
      await Deno.copyFile(clip, req.fragOutput);
    } finally {
      this.running--;
    }
  }
}

/**
 * What the fake models of one test saw, shared by several {@link FakeModel}s
 * (two workers offering one slot): runs in progress by slot, the most at
 * once, each job's run count.
 */
export class ModelLog {
  /** Slot id → the jobs running on it now. */
  readonly bySlot = new Map<string, Set<string>>();
  readonly runs = new Map<string, number>();
  /** Why each aborted run was aborted (the signal's reason). */
  readonly aborted = new Map<string, unknown>();
  running = 0;
  maxRunning = 0;
  maxPerSlot = 0;
  #waiters: (() => void)[] = [];

  start(slot: string, job: string): void {
    const on = this.bySlot.get(slot) ?? new Set();
    on.add(job);
    this.bySlot.set(slot, on);
    this.runs.set(job, (this.runs.get(job) ?? 0) + 1);
    this.running++;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    this.maxPerSlot = Math.max(this.maxPerSlot, on.size);
    for (const w of this.#waiters.splice(0)) w();
  }

  end(slot: string, job: string): void {
    this.bySlot.get(slot)?.delete(job);
    this.running--;
  }

  /** The jobs running now. */
  jobs(): string[] {
    return [...this.bySlot.values()].flatMap((s) => [...s]);
  }

  /** Resolves once `job` is running (any slot). */
  async untilRunning(job: string): Promise<void> {
    while (!this.jobs().includes(job)) {
      await new Promise<void>((r) => this.#waiters.push(r));
    }
  }
}

/**
 * A model adapter whose runs end when the test calls {@link finish} (a
 * video, then transcoded by the encoder) or {@link fail}, and which
 * honours the abort signal at once. Slots can be marked unhealthy.
 */
export class FakeModel implements ModelAdapter {
  readonly unhealthy = new Set<string>();
  #pending = new Map<
    string,
    { resolve: () => void; reject: (e: unknown) => void }
  >();

  constructor(
    readonly slots: SlotInfo[],
    readonly log: ModelLog = new ModelLog(),
  ) {}

  healthy(slot: SlotInfo): Promise<boolean> {
    return Promise.resolve(!this.unhealthy.has(slot.id));
  }

  async run(slot: SlotInfo, run: ModelRun): Promise<ModelResult> {
    const id = run.job.id;
    this.log.start(slot.id, id);
    run.begun?.(); // as a real model does once its program runs
    try {
      await new Promise<void>((resolve, reject) => {
        this.#pending.set(id, { resolve, reject });
        const onAbort = () => {
          this.log.aborted.set(id, run.signal.reason);
          reject(run.signal.reason);
        };
        if (run.signal.aborted) onAbort();
        run.signal.addEventListener("abort", onAbort, { once: true });
      });
      await Deno.writeTextFile(run.output, `video of ${id}`);
      return "video";
    } finally {
      this.#pending.delete(id);
      this.log.end(slot.id, id);
    }
  }

  /** Whether `job` runs on this model now. */
  has(job: string): boolean {
    return this.#pending.has(job);
  }

  /** Ends `job`'s run well. */
  finish(job: string): void {
    this.#pending.get(job)!.resolve();
  }

  /** Ends `job`'s run with `error`. */
  fail(job: string, error: unknown): void {
    this.#pending.get(job)!.reject(error);
  }
}

import type { JobRecord } from "../queue/jobs.ts";
import type {
  ModelAdapter,
  ModelResult,
  ModelRun,
  SlotInfo,
} from "../queue/models/adapter.ts";
import { newJobId } from "../queue/ids.ts";

/** A queued job record as an upload would make it. */
export function queuedJob(
  createdAt: number,
  session = "s1",
  client = "192.0.2.1",
): JobRecord {
  return {
    id: newJobId(createdAt),
    session,
    client,
    status: "queued",
    createdAt,
    startedAt: null,
    finishedAt: null,
    image: {
      type: "image/png",
      width: 64,
      height: 48,
      bytes: 937,
      orientation: 1,
    },
    video: null,
    error: null,
    attempts: 0,
  };
}
