/**
 * The simulated model: `MODEL_DURATION_MS` of wall time per job, which
 * includes making the video (DESIGN.md, "The model's 30 s include making the
 * video"). Progress and the lease are written every tick (≥ 4×/s).
 */
import type { Encoder } from "../media/clip.ts";
import { EncodeError } from "../media/clip.ts";
import type { Store } from "../media/store.ts";
import { packageCenc } from "../media/cenc.ts";
import { encodeBase64Url } from "../shared/base64url.ts";
import type { Clock } from "./clock.ts";
import {
  finishJob,
  type JobRecord,
  releaseLease,
  tick,
  type TickResult,
} from "./jobs.ts";

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

export type RunOutcome = "done" | "failed" | TickResult | "stopped";

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
  const start = job.startedAt ?? clock.now();
  const encoderStop = new AbortController();
  const output = store.videoTempPath(job.id);
  const fragOutput = store.fragTempPath(job.id);
  const discard = async () => {
    await store.remove(output);
    await store.remove(fragOutput);
    await store.remove(store.cencTempPath(job.id));
  };
  type Encoded = { ok: true } | { ok: false; error: unknown };
  // Set by the encoder's promise; read by the loop (an object, so TS sees it change).
  const state: { encoded: Encoded | null } = { encoded: null };
  const encoding = deps.encoder.makeClip({
    input: store.uploadPath(job.id),
    output,
    fragOutput,
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
    if (stop.aborted) return end("stopped");
    const now = clock.now();
    const elapsed = now - start;
    const encoded = state.encoded;
    if (encoded && !encoded.ok) {
      await discard();
      await finishJob(kv, {
        owner: deps.owner,
        jobId: job.id,
        now,
        retentionMs: deps.retentionMs,
        result: { error: encodeFailure(encoded.error) },
      });
      return "failed";
    }
    if (encoded && elapsed >= deps.modelMs) break;
    const ticked = await tick(kv, {
      owner: deps.owner,
      jobId: job.id,
      now,
      leaseMs: deps.leaseMs,
      progress: progressAt(elapsed, deps.modelMs),
    });
    if (ticked !== "ok") {
      await end(ticked);
      await discard();
      if (ticked === "cancelled") await releaseLease(kv, deps.owner, job.id);
      return ticked;
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

  const clearKey = await protect(store, job.id);
  const bytes = await store.commitVideo(job.id);
  const kept = await finishJob(kv, {
    owner: deps.owner,
    jobId: job.id,
    now: clock.now(),
    retentionMs: deps.retentionMs,
    result: { video: clearKey ? { bytes, clearKey } : { bytes } },
  });
  if (!kept) {
    await store.remove(store.videoPath(job.id));
    await store.remove(store.fragPath(job.id));
    await store.remove(store.cencPath(job.id));
  }
  return kept ? "done" : "cancelled";
}

/**
 * Writes the CENC copy of the fragmented MP4 (Clear Key playback) under a key
 * of its own. A clip that cannot be packaged still plays through plain Media
 * Source, so a failure here only logs.
 */
async function protect(store: Store, id: string) {
  try {
    const keys = {
      kid: crypto.getRandomValues(new Uint8Array(16)),
      key: crypto.getRandomValues(new Uint8Array(16)),
    };
    // One clip at a time, a few hundred KB: the model slot bounds this memory.
    const packaged = await packageCenc(
      await Deno.readFile(store.fragTempPath(id)),
      keys,
    );
    await Deno.writeFile(store.cencTempPath(id), packaged);
    return { kid: encodeBase64Url(keys.kid), key: encodeBase64Url(keys.key) };
  } catch (e) {
    console.error(
      `job ${id}: no Clear Key copy (${e instanceof Error ? e.message : e})`,
    );
    await store.remove(store.cencTempPath(id));
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
