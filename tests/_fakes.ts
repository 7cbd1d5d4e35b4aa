/** Test doubles: a clock that moves only when told, an encoder that does not encode. */
import type { ClipRequest, Encoder, TranscodeRequest } from "../media/clip.ts";
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

import type { JobRecord } from "../queue/jobs.ts";
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
