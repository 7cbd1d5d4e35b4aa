/**
 * The worker loop: one per process, running up to one job on each model
 * slot it offers (`ModelAdapter.slots`) at once. Each slot claims the first
 * pending job together with its own lease (`lease.ts`), so several workers
 * may offer the same slot and run at most one job on it. The KV queue is
 * only a doorbell: `listenQueue` runs handlers concurrently and hands a
 * message out again when its handler runs past ~5 s (DESIGN.md), so the
 * handler just rings, and the loop claims with an atomic check. A timer
 * rings too, for KV Connect (no queue delivery) and after a crash.
 */
import { fallbackLogger } from "../log.ts";
import { getAll } from "./_kv.ts";
import { keys } from "./keys.ts";
import {
  claimNext,
  handBack,
  type Lease,
  leaseExpiry,
  type Reclaimed,
  reclaimExpired,
} from "./lease.ts";
import {
  defaultAdapter,
  type ModelDeps,
  runJob,
  type RunOutcome,
} from "./model.ts";
import type { ModelAdapter, SlotInfo } from "./models/adapter.ts";
import { beat } from "./slots.ts";

/**
 * The reason of the aborts that only wake a wait: one shared error, so that
 * a doorbell (one per upload) does not build a DOMException and its stack.
 */
const WAKE_UP = new Error("wake up");

export interface WorkerOptions extends ModelDeps {
  /** Look for work at least this often without a doorbell. */
  idleMs: number;
  /**
   * While a slot waits for work, read the queue's depth this often (wall
   * time) and look for work when it has changed and jobs wait. The doorbell
   * crosses processes late (KV queue delivery, measured 0.5-1 s on one
   * file): a worker process with idle slots would wait for it while jobs
   * uploaded through another process wait too. None: doorbell and `idleMs`
   * only (tests that drive every wake-up with a fake clock).
   */
  wakePollMs?: number;
  /** Called after each job, for tests and logs. */
  onRun?: (id: string, outcome: RunOutcome) => void;
}

/** A slot's health as this worker last saw it, for its heartbeat. */
interface SlotHealth {
  up: number;
  healthy: boolean | null;
  since: number;
}

export class ModelWorker {
  #stop = new AbortController();
  /** Aborted by each ring; a loop going idle waits on the one it read before it looked. */
  #bell = new AbortController();
  #loop: Promise<void> | null = null;
  /** Slot loops waiting for work now. */
  #waiting = 0;
  readonly #adapter: ModelAdapter;
  readonly #log;

  constructor(private readonly deps: WorkerOptions) {
    this.#adapter = defaultAdapter(deps);
    this.#log = deps.log ?? fallbackLogger;
  }

  /** The slots this worker offers. */
  get slots(): readonly SlotInfo[] {
    return this.#adapter.slots;
  }

  /** Starts the loop; it runs until {@link stop}. */
  start(): this {
    this.#loop ??= (async () => {
      await this.#settleLeases().catch((e) =>
        this.#log.error("worker.settle_failed", {}, e)
      );
      await Promise.all(this.#adapter.slots.map((slot) => this.#runSlot(slot)));
    })();
    return this;
  }

  /**
   * Before its first claim, waits until every lease held at start is either
   * renewed (its worker is alive) or expired and its job put back at its
   * place. A worker restarted after a crash thus runs the job it was cut
   * off from first, as with one lease, instead of starting the next job on
   * a new slot while the old one waits out its lease. Waits at most one
   * `LEASE_MS`, and not at all when no lease is held.
   */
  async #settleLeases(): Promise<void> {
    const { kv, clock } = this.deps;
    let waiting = await Array.fromAsync(
      kv.list<Lease>({ prefix: keys.slotAll() }),
    );
    const legacy = await kv.get<Lease>(keys.lease());
    if (legacy.value) waiting.push(legacy as Deno.KvEntry<Lease>);
    while (waiting.length > 0 && !this.#stop.signal.aborted) {
      const now = clock.now();
      const again = await getAll<Lease>(kv, waiting.map((e) => e.key));
      waiting = waiting.filter((e, i) =>
        again[i].versionstamp === e.versionstamp && e.value.expiresAt > now
      );
      await reclaimExpired(kv, now, this.deps.retentionMs, this.#reclaimed);
      if (waiting.length === 0) return;
      const next = Math.min(...waiting.map((e) => e.value.expiresAt));
      await this.#idle(
        Math.max(1, Math.min(this.deps.tickMs, next - now + 1)),
        new AbortController().signal,
      );
    }
  }

  /**
   * Wakes the slots waiting for work. Safe to call any number of times.
   * False when none was waiting (every slot busy): the doorbell is better
   * passed on to another worker.
   */
  ring(): boolean {
    const bell = this.#bell;
    this.#bell = new AbortController();
    bell.abort(WAKE_UP);
    return this.#waiting > 0;
  }

  /** Stops the loop; running jobs are handed back to the queue at their places. */
  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
  }

  async #runSlot(slot: SlotInfo): Promise<void> {
    const now = this.deps.clock.now();
    const health: SlotHealth = { up: now, healthy: null, since: now };
    while (!this.#stop.signal.aborted) {
      const bell = this.#bell.signal;
      try {
        await this.#once(slot, health, bell);
      } catch (e) {
        // A KV hiccup (a locked file, a dropped connection) or a model's
        // health check gone wrong must not end the loop, let alone the
        // process: log it and look again shortly. A job left running is
        // taken up again when its lease runs out.
        this.#log.error("worker.error", { slot: slot.id }, e);
        await this.#idle(this.deps.idleMs, bell);
      }
    }
  }

  /**
   * Claims and runs one job on `slot`, or waits for the doorbell when there
   * is none or the slot is unhealthy. `bell` was read before looking, so a
   * ring meanwhile is not missed.
   */
  async #once(
    slot: SlotInfo,
    health: SlotHealth,
    bell: AbortSignal,
  ): Promise<void> {
    const { kv, clock } = this.deps;
    const healthy = await this.#adapter.healthy(slot, this.#stop.signal)
      .catch((e) => {
        this.#log.error("worker.health_failed", { slot: slot.id }, e);
        return false;
      });
    const now = clock.now();
    if (healthy !== health.healthy) {
      health.healthy = healthy;
      health.since = now;
    }
    await beat(kv, slot, {
      owner: this.deps.owner,
      healthy,
      up: health.up,
      since: health.since,
      now,
      ttlMs: 2 * this.deps.idleMs + this.deps.leaseMs,
    });
    if (!healthy) {
      await this.#idle(this.deps.idleMs, bell);
      return;
    }
    // Read before looking, so that a job queued meanwhile counts as a change.
    const depthSeen = this.deps.wakePollMs
      ? (await kv.get<number>(keys.depth())).versionstamp
      : undefined;
    const job = await claimNext(kv, {
      onReclaimed: this.#reclaimed,
      owner: this.deps.owner,
      slot: slot.id,
      kind: slot.kind,
      now,
      leaseMs: this.deps.leaseMs,
      retentionMs: this.deps.retentionMs,
    });
    if (!job) {
      // A lease of any slot (perhaps of a dead worker) is looked at again
      // the moment it runs out.
      const expiry = await leaseExpiry(kv);
      await this.#idle(
        expiry === null
          ? this.deps.idleMs
          : Math.min(this.deps.idleMs, Math.max(1, expiry - clock.now() + 1)),
        bell,
        depthSeen,
      );
      return;
    }
    // A job started again after its worker died: the crash's retry.
    if (job.attempts > 1) {
      this.#log.info("job.retried", { job: job.id, attempt: job.attempts });
    }
    this.#log.info("job.started", {
      job: job.id,
      slot: slot.id,
      attempt: job.attempts,
    });
    const outcome = await runJob(this.deps, job, this.#stop.signal, slot);
    // done and failed are logged by runJob, with the video or the error.
    if (outcome === "stopped" || outcome === "busy") {
      this.#log.info("job.requeued", {
        job: job.id,
        slot: slot.id,
        reason: outcome === "busy" ? "slot_busy" : "worker_stopping",
      });
    } else if (outcome === "lost" || outcome === "cancelled") {
      // cancelled: the route that cancelled it logged `job.cancelled`.
      this.#log.info("job.stopped", {
        job: job.id,
        slot: slot.id,
        reason: outcome,
      });
    }
    if (outcome === "stopped" || outcome === "busy") {
      await handBack(
        kv,
        { owner: this.deps.owner, jobId: job.id, slot: slot.id },
        clock.now(),
      );
      // A model busy with someone else's work is asked again a little later.
      if (outcome === "busy") await this.#idle(this.deps.idleMs, bell);
    } else if (outcome === "done") {
      // The video is made: the picture is no longer needed. A failed or
      // cancelled job keeps it for a retry, until retention or a delete.
      await this.deps.store.removeImage(job.id);
    }
    this.deps.onRun?.(job.id, outcome);
  }

  /** Logs a dead worker's job taken back (its lease ran out). */
  #reclaimed = (r: Reclaimed) => {
    if (r.outcome === "failed") {
      this.#log.info("job.failed", {
        job: r.jobId,
        slot: r.slot,
        code: "model_crashed",
        attempt: r.attempts,
      });
    } else {
      this.#log.info("job.requeued", {
        job: r.jobId,
        slot: r.slot,
        reason: "lease_expired",
        attempt: r.attempts,
      });
    }
  };

  /**
   * Sleeps until `ms` pass, the doorbell rings or the loop is stopped; with
   * `depthSeen` (the queue depth's versionstamp when the slot found no job)
   * and `wakePollMs`, also when the depth has changed and jobs wait.
   */
  async #idle(
    ms: number,
    bell: AbortSignal,
    depthSeen?: string | null,
  ): Promise<void> {
    const wake = new AbortController();
    if (depthSeen !== undefined && this.deps.wakePollMs) {
      this.#pollDepth(depthSeen, this.deps.wakePollMs, wake);
    }
    const onWake = () => wake.abort(WAKE_UP);
    bell.addEventListener("abort", onWake, { once: true });
    this.#stop.signal.addEventListener("abort", onWake, { once: true });
    if (bell.aborted || this.#stop.signal.aborted) wake.abort(WAKE_UP);
    this.#waiting++;
    await this.deps.clock.sleep(ms, wake.signal);
    this.#waiting--;
    wake.abort(WAKE_UP); // ends the poll
    bell.removeEventListener("abort", onWake);
    this.#stop.signal.removeEventListener("abort", onWake);
  }

  /** Aborts `wake` once the queue depth has moved from `seen` with jobs waiting. */
  async #pollDepth(
    seen: string | null,
    everyMs: number,
    wake: AbortController,
  ): Promise<void> {
    while (!wake.signal.aborted) {
      await wallSleep(everyMs, wake.signal);
      if (wake.signal.aborted) return;
      const depth = await this.deps.kv.get<number>(keys.depth())
        .catch(() => null); // a KV hiccup: the next poll or the timer
      if (depth && depth.versionstamp !== seen && (depth.value ?? 0) > 0) {
        wake.abort(WAKE_UP);
      }
    }
  }
}

/** Resolves after `ms` of wall time, or at once when `signal` aborts. */
function wallSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
