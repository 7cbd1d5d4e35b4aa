/**
 * Wires the real parts together for one process: KV, store, worker, app.
 * `main.ts` calls it with the environment's config; tests call it with a
 * temp dir, a `:memory:` KV and, where they want, a fake clock or encoder.
 */
import type { Hono } from "hono";
import { createApp } from "./app.ts";
import { UploadsInFlight } from "./routes/limits.ts";
import type { Config } from "./config.ts";
import { createLogger, type Logger } from "./log.ts";
import {
  ChildEncoder,
  type Encoder,
  ensureFfmpegInstalled,
} from "./media/clip.ts";
import { DiskStore, type Store } from "./media/store.ts";
import { type Clock, realClock } from "./queue/clock.ts";
import { JobHub } from "./queue/hub.ts";
import { migrateLegacyLine } from "./queue/jobs.ts";
import { retryingWhenBusy } from "./queue/_kv.ts";
import { keys } from "./queue/keys.ts";
import type { ModelAdapter } from "./queue/models/adapter.ts";
import { createAdapter } from "./queue/models/index.ts";
import { QueueView } from "./queue/view.ts";
import { sweepExpired, sweepOrphans } from "./queue/retention.ts";
import { ModelWorker, type WorkerOptions } from "./queue/worker.ts";
import { importSecret, type SessionEnv } from "./routes/session.ts";
import { cogWebhookUrl } from "./routes/webhooks.ts";

export interface Service {
  kv: Deno.Kv;
  app: Hono<SessionEnv> | null;
  worker: ModelWorker | null;
  /** This process's worker id: its lease owner, and its per-process slots' ids. */
  workerId: string;
  hub: JobHub;
  /** This process's logger (`LOG_FORMAT`, with its ROLE). */
  log: Logger;
  /**
   * A graceful stop, first half: uploads get 503, event streams end, the
   * running job goes back to the queue at its place.
   */
  drain(): Promise<void>;
  /** Tells the service the address it serves (the default webhook base). */
  listening(url: string): void;
  /** {@link drain}, then closes the KV. */
  close(): Promise<void>;
}

/** Timings of the model loop; tests may shorten them. */
export const TIMINGS = {
  /** Progress and lease writes: 5/s, above the 4/s the design asks for. */
  tickMs: 200,
  /** Look for work this often even without a queue doorbell. */
  idleMs: 2_000,
  /** An idle slot reads the queue depth this often (`WorkerOptions.wakePollMs`). */
  wakePollMs: 100,
  /** Kill an encoder that runs this long. */
  encodeTimeoutMs: 120_000,
  /** How often a web-only process polls a watched job. */
  pollMs: 250,
  /** Crash leftovers younger than this may still be in use by another process. */
  orphanGraceMs: 10 * 60_000,
};

/** How many times a doorbell is passed on by workers with no idle slot. */
export const BELL_HOPS = 3;

/** The longest wait between two sweeps: leftovers do not wait long. */
export const SWEEP_MAX_MS = 10 * 60_000;
/** The shortest wait between two sweeps: a tiny retention does not spin. */
export const SWEEP_MIN_MS = 1_000;

/**
 * How often the retention and orphan sweeps run: a quarter of the retention
 * period, so a job outlives `RETENTION_HOURS` by at most a quarter of it,
 * within {@link SWEEP_MIN_MS} and {@link SWEEP_MAX_MS}.
 */
export function sweepIntervalMs(retentionMs: number): number {
  return Math.min(SWEEP_MAX_MS, Math.max(SWEEP_MIN_MS, retentionMs / 4));
}

export async function startService(
  config: Config,
  overrides: {
    kv?: Deno.Kv;
    clock?: Clock;
    encoder?: Encoder;
    /** Where uploads and videos go; a {@link DiskStore} under `DATA_DIR` by default. */
    store?: Store;
    timings?: Partial<typeof TIMINGS>;
    onRun?: WorkerOptions["onRun"];
    /** The model; by default the one `MODEL` names (`queue/models/index.ts`). */
    adapter?: (deps: { clock: Clock; workerId: string }) => ModelAdapter;
    /** Where log lines go; by default `LOG_FORMAT` lines on stdout and stderr. */
    log?: Logger;
  } = {},
): Promise<Service> {
  const timings = { ...TIMINGS, ...overrides.timings };
  const log = overrides.log ??
    createLogger({ format: config.logFormat, role: config.role });
  await Deno.mkdir(config.dataDir, { recursive: true });
  const kv = retryingWhenBusy(overrides.kv ?? await Deno.openKv(config.kvPath));
  const clock = overrides.clock ?? realClock;
  const store = overrides.store ?? await new DiskStore(config.dataDir).init();
  // Where Cog servers call back (MODEL=cog): WEBHOOK_BASE_URL, else the
  // address this process serves once it listens (main.ts says which).
  let listeningOn: string | null = null;
  const webhookBase = () =>
    config.webhookBaseUrl ?? listeningOn ??
      `http://${config.hostname}:${config.port}/`;
  const key = await loadKey(kv);
  // Jobs queued by a version before the fair order keep their old order, first.
  await migrateLegacyLine(kv);
  const hub = new JobHub(
    kv,
    config.role === "web"
      ? { watch: false, pollMs: timings.pollMs, log }
      : { watch: true, log },
  );

  let worker: ModelWorker | null = null;
  const workerId = crypto.randomUUID();
  if (config.role !== "web") {
    if (!overrides.encoder) await ensureFfmpegInstalled();
    const encoder = overrides.encoder ??
      new ChildEncoder({ timeoutMs: timings.encodeTimeoutMs });
    worker = new ModelWorker({
      kv,
      clock,
      store,
      encoder,
      adapter: overrides.adapter?.({ clock, workerId }) ??
        createAdapter(config, {
          clock,
          encoder,
          workerId,
          kv,
          log,
          webhookUrl: (id) => cogWebhookUrl(key, webhookBase(), id),
        }),
      modelTimeoutMs: config.modelTimeoutMs,
      owner: workerId,
      modelMs: config.modelMs,
      leaseMs: config.leaseMs,
      tickMs: timings.tickMs,
      idleMs: timings.idleMs,
      // A fake clock's tests drive every wake-up themselves.
      wakePollMs: overrides.clock ? undefined : timings.wakePollMs,
      retentionMs: config.retentionMs,
      onRun: overrides.onRun,
      log,
    }).start();
    const w = worker;
    // The doorbell only: returns at once (DESIGN.md: handlers run concurrently
    // and are re-delivered past ~5 s).
    // A worker with every slot busy passes the doorbell on, a few times at
    // most, so that an idle worker elsewhere starts the job now rather than
    // at its next look (`idleMs`).
    kv.listenQueue((msg: { id?: string; hops?: number }) => {
      const hops = msg?.hops ?? 0;
      if (!w.ring() && hops < BELL_HOPS) {
        kv.enqueue({ ...msg, hops: hops + 1 }).catch(() => {/* KV closed */});
      }
    }).catch(() => {/* KV closed */});
  }

  // Retention and crash leftovers. With ROLE=all nobody else writes to the
  // store, so at start every leftover is an orphan.
  let sweeper: ReturnType<typeof setInterval> | undefined;
  if (config.role !== "web") {
    await sweepOrphans(
      kv,
      store,
      clock.now(),
      config.role === "all" ? 0 : timings.orphanGraceMs,
    );
    const sweep = async () => {
      try {
        await sweepExpired(kv, store, clock.now(), config.retentionMs);
        await sweepOrphans(kv, store, clock.now(), timings.orphanGraceMs);
      } catch (e) {
        log.error("sweep.failed", {}, e);
      }
    };
    await sweep();
    sweeper = setInterval(sweep, sweepIntervalMs(config.retentionMs));
  }

  let draining = false;
  const shutdown = new AbortController();
  const app = config.role === "worker" ? null : createApp({
    kv,
    clock,
    store,
    config,
    key,
    queue: new QueueView(kv, { kind: config.model, clock }),
    hub,
    ring: () => worker?.ring(),
    draining: () => draining,
    inFlight: new UploadsInFlight(config),
    shutdown: shutdown.signal,
    log,
  });

  let drained: Promise<void> | null = null;
  const drain = () =>
    drained ??= (async () => {
      draining = true;
      shutdown.abort();
      clearInterval(sweeper);
      await worker?.stop();
    })();

  return {
    kv,
    app,
    worker,
    workerId,
    hub,
    log,
    drain,
    listening(url) {
      listeningOn = url;
    },
    async close() {
      await drain();
      hub.close();
      kv.close();
    },
  };
}

/** The HMAC key, made once and kept in KV so sessions survive restarts. */
export async function loadKey(kv: Deno.Kv): Promise<CryptoKey> {
  for (;;) {
    const entry = await kv.get<Uint8Array<ArrayBuffer>>(keys.secret());
    if (entry.value) return importSecret(entry.value);
    await kv.atomic().check(entry)
      .set(keys.secret(), crypto.getRandomValues(new Uint8Array(32)))
      .commit();
  }
}
