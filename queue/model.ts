/**
 * One run of one claimed job on one model slot, whatever the model
 * (`models/adapter.ts`): the adapter runs, and meanwhile this module renews
 * the slot's lease and writes the job's progress every tick (≥ 4×/s), stops
 * the run on cancel, graceful stop or `MODEL_TIMEOUT_MS`, and keeps the slot
 * held until the model has stopped. Then the shared media step (a model's
 * own video made into the contract's MP4), the Clear Key copy and the commit.
 */
import type { Encoder } from "../media/clip.ts";
import { EncodeError } from "../media/clip.ts";
import type { Store, Workspace } from "../media/store.ts";
import { packageCenc } from "../media/cenc.ts";
import { encodeBase64Url } from "../shared/base64url.ts";
import type { JobError } from "../shared/api.ts";
import type { Clock } from "./clock.ts";
import type { JobRecord } from "./jobs.ts";
import {
  DEFAULT_SLOT,
  extendLease,
  finishJob,
  type LeaseHolder,
  type LeaseRenewal,
  releaseLease,
  renewLease,
} from "./lease.ts";
import {
  type ModelAdapter,
  ModelError,
  type ModelRun,
  SlotBusy,
  type SlotInfo,
} from "./models/adapter.ts";
import { SimulatedAdapter } from "./models/simulated.ts";

export { progressAt } from "./models/simulated.ts";

export interface ModelDeps {
  kv: Deno.Kv;
  clock: Clock;
  encoder: Encoder;
  store: Store;
  /** This worker's lease owner id. */
  owner: string;
  modelMs: number;
  leaseMs: number;
  /** How often progress and the lease are written; ≤ 250 ms. */
  tickMs: number;
  retentionMs: number;
  /** The model; the simulated one (one slot) when not given. */
  adapter?: ModelAdapter;
  /** A real model's run longer than this fails with `model_timeout` (none for the simulated one). */
  modelTimeoutMs?: number;
}

/**
 * How a run ended; `"busy"`: the slot's model was busy with someone else's
 * work (Cog's 409), so the job goes back to its place, no attempt counted.
 */
export type RunOutcome =
  | "done"
  | "failed"
  | LeaseRenewal
  | "stopped"
  | "busy";

/** Why a run was told to stop: the abort signal's reason. */
export class RunStopped extends Error {
  override name = "RunStopped";
  constructor(readonly why: "stopped" | "cancelled" | "lost" | "timeout") {
    super(`run stopped: ${why}`);
  }
}

/** The simulated adapter a worker without one runs (its first slot). */
export function defaultAdapter(deps: ModelDeps): ModelAdapter {
  return deps.adapter ?? new SimulatedAdapter({
    clock: deps.clock,
    encoder: deps.encoder,
    modelMs: deps.modelMs,
    workerId: deps.owner,
  });
}

/** The slot of callers that claimed with no slot named (`DEFAULT_SLOT`). */
const DEFAULT_SLOT_INFO: SlotInfo = { id: DEFAULT_SLOT, kind: "simulated" };

/**
 * Runs one claimed job to its end on `slot`. `stop` aborts it and leaves the
 * slot for the caller to hand back. Never throws for a model's failure: the
 * job fails with the {@link ModelError}'s code and sentence.
 */
export async function runJob(
  deps: ModelDeps,
  job: JobRecord,
  stop: AbortSignal,
  slot: SlotInfo = DEFAULT_SLOT_INFO,
): Promise<RunOutcome> {
  const { kv, clock, store } = deps;
  const adapter = defaultAdapter(deps);
  const holder: LeaseHolder = {
    owner: deps.owner,
    jobId: job.id,
    slot: slot.id,
  };
  const start = job.startedAt ?? clock.now();
  const workspace = await store.workspace(job.id);
  const modelOutput = `${workspace.outputs.video}.model`;
  const abort = new AbortController();
  let percent = 0;
  /** `ModelRun.wait` calls pending: each tick calls them, the loop sleeps no later than their `at`. */
  const waiters = new Set<Waiter>();
  /** Aborted to end the loop's current sleep early (a new, earlier waiter). */
  let wakeTick: AbortController | null = null;
  abort.signal.addEventListener("abort", () => {
    for (const w of waiters) w.reject(abort.signal.reason);
    waiters.clear();
  }, { once: true });
  const run: ModelRun = {
    job,
    input: workspace.input,
    output: modelOutput,
    clip: {
      video: workspace.outputs.video,
      fragments: workspace.outputs.fragments,
    },
    progress(p) {
      if (Number.isFinite(p)) percent = Math.max(percent, Math.min(99, p));
    },
    signal: abort.signal,
    wait: (at, onTick) =>
      new Promise<void>((resolve, reject) => {
        if (abort.signal.aborted) return reject(abort.signal.reason);
        waiters.add({ at, onTick, resolve, reject });
        wakeTick?.abort();
      }),
  };
  type Settled = { ok: true } | { ok: false; error: unknown };
  // Set by the run's promise; read by the loop (an object, so TS sees it change).
  const state: { settled: Settled | null } = { settled: null };
  const work = (async () => {
    if ((await adapter.run(slot, run)) === "video") {
      abort.signal.throwIfAborted();
      await transcode(deps.encoder, modelOutput, workspace, abort.signal);
    }
  })().then(
    () => void (state.settled = { ok: true }),
    (error) => void (state.settled = { ok: false, error }),
  );
  const timeoutMs = slot.kind === "simulated"
    ? Infinity
    : deps.modelTimeoutMs ?? Infinity;
  let why: RunStopped["why"] | null = null;

  while (!state.settled) {
    const now = clock.now();
    if (why === null) {
      if (stop.aborted) why = "stopped";
      else if (now - start >= timeoutMs) why = "timeout";
      else {
        let woke = false;
        for (const w of [...waiters]) {
          w.onTick?.(now);
          if (now >= w.at) {
            waiters.delete(w);
            w.resolve();
            woke = true;
          }
        }
        // A run woken at its time usually ends now: let it, before the next
        // tick is scheduled (a macrotask comes after all of its promise steps).
        if (woke) await Promise.race([work, nextMacrotask()]);
        // A KV hiccup (a locked file) skips one renewal; the lease outlasts
        // several ticks, and a lease really lost says so at the next one.
        const renewal = await renewLease(kv, {
          ...holder,
          now,
          leaseMs: deps.leaseMs,
          progress: percent,
        }).catch((e) => (logKv(job.id, e), "ok" as const));
        if (renewal !== "ok") why = renewal;
      }
      if (why !== null) {
        abort.abort(new RunStopped(why));
        if (why !== "lost") {
          await extendLease(kv, { ...holder, now, leaseMs: deps.leaseMs })
            .catch((e) => logKv(job.id, e));
        }
        // Most models stop at once. The slot stays held meanwhile; a model
        // slower to stop is waited for tick by tick below.
        await settledWithin(work, STOP_GRACE_MS);
        continue;
      }
    } else if (why !== "lost") {
      // Told to stop and still stopping: the slot stays held meanwhile.
      const held = await extendLease(kv, {
        ...holder,
        now,
        leaseMs: deps.leaseMs,
      }).catch((e) => (logKv(job.id, e), true));
      if (!held) {
        why = "lost";
      }
    }
    if (state.settled) break;
    if (why !== null) {
      // Stopping takes wall time, whatever the clock (and the stop signal
      // has fired already, so it could not end a sleep on the clock).
      await settledWithin(work, STOP_GRACE_MS);
      continue;
    }
    const wait = Math.max(
      1,
      Math.min(
        deps.tickMs,
        start + timeoutMs - now,
        ...[...waiters].map((w) => w.at - now),
      ),
    );
    const wake = wakeTick = new AbortController();
    const onStop = () => wake.abort();
    stop.addEventListener("abort", onStop, { once: true });
    if (stop.aborted) wake.abort(); // told meanwhile: the listener came late
    const sleeping = clock.sleep(wait, wake.signal);
    // Wake early when the run ends, so the slot is freed at once.
    await Promise.race([sleeping, work]);
    wake.abort();
    wakeTick = null;
    stop.removeEventListener("abort", onStop);
  }
  await removeFile(modelOutput);

  const settled = state.settled as Settled;
  const fail = async (error: JobError) => {
    await workspace.discard();
    await retryKv(deps, job.id, () =>
      finishJob(kv, {
        ...holder,
        now: clock.now(),
        retentionMs: deps.retentionMs,
        result: { error },
      }));
    return "failed" as const;
  };
  switch (why) {
    case "stopped": // handed back: the next run starts from 0 in a workspace of its own
    case "lost":
      await workspace.discard();
      return why;
    case "cancelled":
      await workspace.discard();
      await retryKv(deps, job.id, () => releaseLease(kv, holder, clock.now()));
      return "cancelled";
    case "timeout":
      return await fail({
        code: "model_timeout",
        message: `The model ran longer than ${
          Math.round(timeoutMs / 1000)
        } s on this image and was stopped.`,
      });
  }
  if (!settled.ok && settled.error instanceof SlotBusy) {
    await workspace.discard();
    return "busy";
  }
  if (!settled.ok) return await fail(runFailure(job.id, settled.error));

  const clearKey = await packageClearKeyCopy(workspace, job.id);
  const { bytes, stored } = await workspace.commit();
  const kept = await retryKv(deps, job.id, () =>
    finishJob(kv, {
      ...holder,
      now: clock.now(),
      retentionMs: deps.retentionMs,
      result: {
        video: clearKey ? { bytes, stored, clearKey } : { bytes, stored },
      },
    }));
  // Cancelled meanwhile: the videos go; the image stays for a retry (or is
  // gone already, with the job, if it was deleted).
  if (!kept) await store.removeVideo(job.id);
  return kept ? "done" : "cancelled";
}

/** A pending `ModelRun.wait`. */
interface Waiter {
  at: number;
  onTick?: (now: number) => void;
  resolve: () => void;
  reject: (reason: unknown) => void;
}

/**
 * The media step of a model that made its own video: the contract's MP4 and
 * fragmented copy from it (`Encoder.transcode`).
 */
async function transcode(
  encoder: Encoder,
  input: string,
  workspace: Workspace,
  signal: AbortSignal,
): Promise<void> {
  if (!encoder.transcode) {
    throw new ModelError(
      "encode_failed",
      "This worker cannot make a model's video into the MP4 yet.",
    );
  }
  await encoder.transcode({
    input,
    output: workspace.outputs.video,
    fragOutput: workspace.outputs.fragments,
    signal,
  });
}

/** Tries of a commit that ends a run before the error goes to the loop. */
const KV_TRIES = 5;

function logKv(id: string, e: unknown) {
  console.error(`job ${id}: KV error (tried again):`, e);
}

/**
 * Runs `commit` (one that ends a run), trying again a tick later on a KV
 * error (a locked file): giving up would leave the job to its lease's
 * expiry and a second run.
 */
async function retryKv<T>(
  deps: Pick<ModelDeps, "clock" | "tickMs">,
  id: string,
  commit: () => Promise<T>,
): Promise<T> {
  for (let i = 1;; i++) {
    try {
      return await commit();
    } catch (e) {
      if (i >= KV_TRIES) throw e;
      logKv(id, e);
      await deps.clock.sleep(deps.tickMs);
    }
  }
}

/**
 * How long a model told to stop is waited for before the lease is renewed
 * again: wall time (a process stopping takes wall time, whatever the clock).
 */
const STOP_GRACE_MS = 1_000;

/** Resolves when `p` settles or `ms` of wall time pass, leaving no timer behind. */
async function settledWithin(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    p,
    new Promise<void>((resolve) => (timer = setTimeout(resolve, ms))),
  ]);
  clearTimeout(timer);
}

const nextMacrotask = () =>
  new Promise<void>((resolve) => setTimeout(resolve, 0));

async function removeFile(path: string): Promise<void> {
  await Deno.remove(path).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e; // else: never written
  });
}

/**
 * Writes the CENC copy of the fragmented MP4 (Clear Key playback) under a key
 * of its own. A clip that cannot be packaged still plays through plain Media
 * Source, so a failure here only logs.
 */
async function packageClearKeyCopy(workspace: Workspace, id: string) {
  const { fragments, cenc } = workspace.outputs;
  try {
    const clearKey = {
      kid: crypto.getRandomValues(new Uint8Array(16)),
      key: crypto.getRandomValues(new Uint8Array(16)),
    };
    // One short clip at a time: the model slot bounds this memory.
    const packaged = await packageCenc(
      await Deno.readFile(fragments),
      clearKey,
    );
    await Deno.writeFile(cenc, packaged);
    return {
      kid: encodeBase64Url(clearKey.kid),
      key: encodeBase64Url(clearKey.key),
    };
  } catch (e) {
    console.error(
      `job ${id}: no Clear Key copy (${e instanceof Error ? e.message : e})`,
    );
    await Deno.remove(cenc).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e; // else: not written
    });
    return null;
  }
}

/** The job's error for a run that failed: the model's own, else a sentence of ours. */
function runFailure(id: string, error: unknown): JobError {
  if (error instanceof ModelError) {
    return { code: error.code, message: error.message };
  }
  if (error instanceof EncodeError && error.code !== "encode_aborted") {
    return { code: error.code, message: error.message };
  }
  console.error(`job ${id}: the model failed:`, error);
  return {
    code: "model_failed",
    message: "The model failed on this image.",
  };
}
