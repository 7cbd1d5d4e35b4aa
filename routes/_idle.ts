/**
 * The idle cut-off of an upload's body (API.md `UPLOAD_IDLE_SECONDS`): a
 * client that stops sending would otherwise hold its connection, its slot
 * and its buffers for as long as it likes. One sleep on the injected clock
 * per upload, not a timer per chunk: each chunk only notes the time, and the
 * sleep, when it wakes early, goes back to sleep for what is left.
 */
import type { Clock } from "../queue/clock.ts";
import { uploadTimeout } from "./errors.ts";

/** Why the watch's timer stops (shared: no DOMException per upload). */
const DISPOSED = new Error("upload read");

/** Watches one body; dispose it when the body is done with. */
export class IdleWatch implements Disposable {
  #last: number;
  #stop = new AbortController();
  #onIdle: (() => void) | null = null;
  #timedOut = false;

  constructor(private readonly clock: Clock, readonly idleMs: number) {
    this.#last = clock.now();
    this.#run();
  }

  /** What to stop when no byte came for `idleMs` (the body's reader). */
  onIdle(stop: () => void): void {
    this.#onIdle = stop;
    if (this.#timedOut) stop();
  }

  /** Bytes arrived: the idle time starts again. */
  touch(): void {
    this.#last = this.clock.now();
  }

  /** Throws 408 `upload_timeout` once the body has been idle too long. */
  check(): void {
    if (this.#timedOut) throw uploadTimeout(this.idleMs);
  }

  get timedOut(): boolean {
    return this.#timedOut;
  }

  async #run() {
    const signal = this.#stop.signal;
    for (;;) {
      const left = this.#last + this.idleMs - this.clock.now();
      if (left <= 0) break;
      await this.clock.sleep(left, signal);
      if (signal.aborted) return;
    }
    this.#timedOut = true;
    this.#onIdle?.();
  }

  [Symbol.dispose](): void {
    this.#stop.abort(DISPOSED);
  }
}
