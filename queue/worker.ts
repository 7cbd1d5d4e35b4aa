/**
 * The one worker loop that owns the model slot. The KV queue is only a
 * doorbell: `listenQueue` runs handlers concurrently and hands a message out
 * again when its handler runs past ~5 s (DESIGN.md), so the handler just
 * rings, and this loop claims the oldest pending job with an atomic check.
 * A timer rings too, for KV Connect (no queue delivery) and after a crash.
 */
import { claimNext, handBack, leaseExpiry } from "./lease.ts";
import { type ModelDeps, runJob, type RunOutcome } from "./model.ts";

export interface WorkerOptions extends ModelDeps {
  /** Look for work at least this often without a doorbell. */
  idleMs: number;
  /** Called after each job, for tests and logs. */
  onRun?: (id: string, outcome: RunOutcome) => void;
}

export class ModelWorker {
  #stop = new AbortController();
  #bell = new AbortController();
  #loop: Promise<void> | null = null;

  constructor(private readonly deps: WorkerOptions) {}

  /** Starts the loop; it runs until {@link stop}. */
  start(): this {
    this.#loop ??= this.#run();
    return this;
  }

  /** Wakes the loop if it is waiting for work. Safe to call any number of times. */
  ring(): void {
    this.#bell.abort();
  }

  /** Stops the loop; a running job is handed back to the queue at its place. */
  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
  }

  async #run(): Promise<void> {
    while (!this.#stop.signal.aborted) {
      try {
        await this.#once();
      } catch (e) {
        // A KV hiccup (a locked file, a dropped connection) must not end the
        // loop, let alone the process: log it and look again shortly. A job
        // left running is taken up again when its lease runs out.
        console.error("worker:", e);
        await this.#idle(this.deps.idleMs);
      }
    }
  }

  /** Claims and runs one job, or waits for the doorbell when there is none. */
  async #once(): Promise<void> {
    const { kv, clock } = this.deps;
    this.#bell = new AbortController();
    const job = await claimNext(kv, {
      owner: this.deps.owner,
      now: clock.now(),
      leaseMs: this.deps.leaseMs,
      retentionMs: this.deps.retentionMs,
    });
    if (!job) {
      // A slot held by a lease (perhaps of a dead worker) is looked at
      // again the moment that lease runs out.
      const expiry = await leaseExpiry(kv);
      await this.#idle(
        expiry === null
          ? this.deps.idleMs
          : Math.min(this.deps.idleMs, Math.max(1, expiry - clock.now() + 1)),
      );
      return;
    }
    const outcome = await runJob(this.deps, job, this.#stop.signal);
    if (outcome === "stopped") {
      await handBack(
        kv,
        { owner: this.deps.owner, jobId: job.id },
        clock.now(),
      );
    } else if (outcome !== "lost") {
      // Ended one way or another: the picture is no longer needed.
      await this.deps.store.removeImage(job.id);
    }
    this.deps.onRun?.(job.id, outcome);
  }

  /** Sleeps until `ms` pass, the doorbell rings or the loop is stopped. */
  async #idle(ms: number): Promise<void> {
    const wake = this.#bell;
    const onStop = () => wake.abort();
    this.#stop.signal.addEventListener("abort", onStop, { once: true });
    await this.deps.clock.sleep(ms, wake.signal);
    this.#stop.signal.removeEventListener("abort", onStop);
  }
}
