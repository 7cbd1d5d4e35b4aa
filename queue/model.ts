/**
 * The simulated model: `MODEL_DURATION_MS` of wall time per job, which
 * includes making the video (DESIGN.md, "The model's 30 s include making the
 * video"). Progress and the lease are written every tick (≥ 4×/s).
 */
import type { Encoder } from "../media/clip.ts";
import { EncodeError } from "../media/clip.ts";
import type { Store, Workspace } from "../media/store.ts";
import { packageCenc } from "../media/cenc.ts";
import { encodeBase64Url } from "../shared/base64url.ts";
import type { Clock } from "./clock.ts";
import type { JobRecord } from "./jobs.ts";
import {
  finishJob,
  type LeaseHolder,
  type LeaseRenewal,
  releaseLease,
  renewLease,
} from "./lease.ts";

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
}

export type RunOutcome = "done" | "failed" | LeaseRenewal | "stopped";

/** Progress after `elapsed` of `total`: one decimal, never 100 before done. */
export function progressAt(elapsed: number, total: number): number {
  return Math.min(99, Math.floor((elapsed / total) * 1000) / 10);
}

/**
 * Runs one claimed job to its end. `stop` aborts it and leaves the slot for
 * the caller to hand back.
 */
export async function runJob(
  deps: ModelDeps,
  job: JobRecord,
  stop: AbortSignal,
): Promise<RunOutcome> {
  const { kv, clock, store } = deps;
  const holder: LeaseHolder = { owner: deps.owner, jobId: job.id };
  const start = job.startedAt ?? clock.now();
  const encoderStop = new AbortController();
  const workspace = await store.workspace(job.id);
  type Encoded = { ok: true } | { ok: false; error: unknown };
  // Set by the encoder's promise; read by the loop (an object, so TS sees it change).
  const state: { encoded: Encoded | null } = { encoded: null };
  const encoding = deps.encoder.makeClip({
    input: workspace.input,
    output: workspace.outputs.video,
    fragOutput: workspace.outputs.fragments,
    width: job.image.width,
    height: job.image.height,
    orientation: job.image.orientation,
    signal: encoderStop.signal,
  }).then(
    () => void (state.encoded = { ok: true }),
    (error) => void (state.encoded = { ok: false, error }),
  );
  const end = async (outcome: RunOutcome) => {
    encoderStop.abort();
    await encoding;
    return outcome;
  };

  for (;;) {
    if (stop.aborted) {
      // Handed back: the next run starts from 0 in a workspace of its own.
      await end("stopped");
      await workspace.discard();
      return "stopped";
    }
    const now = clock.now();
    const elapsed = now - start;
    const encoded = state.encoded;
    if (encoded && !encoded.ok) {
      await workspace.discard();
      await finishJob(kv, {
        ...holder,
        now,
        retentionMs: deps.retentionMs,
        result: { error: encodeFailure(encoded.error) },
      });
      return "failed";
    }
    if (encoded && elapsed >= deps.modelMs) break;
    const renewal = await renewLease(kv, {
      ...holder,
      now,
      leaseMs: deps.leaseMs,
      progress: progressAt(elapsed, deps.modelMs),
    });
    if (renewal !== "ok") {
      await end(renewal);
      await workspace.discard();
      if (renewal === "cancelled") await releaseLease(kv, holder);
      return renewal;
    }
    const left = deps.modelMs - elapsed;
    const wait = left > 0 ? Math.min(deps.tickMs, left) : deps.tickMs;
    const wake = new AbortController();
    const onStop = () => wake.abort();
    stop.addEventListener("abort", onStop, { once: true });
    const sleeping = clock.sleep(wait, wake.signal);
    // Wake early when the encoder ends, so a failure frees the slot at once.
    await (encoded ? sleeping : Promise.race([sleeping, encoding]));
    wake.abort();
    stop.removeEventListener("abort", onStop);
  }

  const clearKey = await packageClearKeyCopy(workspace, job.id);
  const { bytes, stored } = await workspace.commit();
  const kept = await finishJob(kv, {
    ...holder,
    now: clock.now(),
    retentionMs: deps.retentionMs,
    result: {
      video: clearKey ? { bytes, stored, clearKey } : { bytes, stored },
    },
  });
  // Cancelled meanwhile: the videos go, and the image with them (the worker
  // removes it after any ending but a lost lease).
  if (!kept) await store.removeJob(job.id);
  return kept ? "done" : "cancelled";
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

function encodeFailure(error: unknown) {
  if (error instanceof EncodeError) {
    return { code: error.code, message: error.message };
  }
  return {
    code: "encode_failed",
    message: "The video could not be made from this image.",
  };
}
