/**
 * The simulated model (API.md "Models", the default): `MODEL_DURATION_MS` of
 * wall time per job on the injected clock, which includes making the 5-frame
 * clip with the encoder (DESIGN.md, "The model's 30 s include making the
 * video"); progress by elapsed time. One slot per worker process.
 */
import { EncodeError, type Encoder } from "../../media/clip.ts";
import type { Clock } from "../clock.ts";
import {
  type ModelAdapter,
  ModelError,
  type ModelResult,
  type ModelRun,
  type SlotInfo,
} from "./adapter.ts";

export interface SimulatedDeps {
  clock: Clock;
  encoder: Encoder;
  /** `MODEL_DURATION_MS`. */
  modelMs: number;
  /** This worker's id: the slot is `simulated:<worker id>`. */
  workerId: string;
  /**
   * Slots this process offers (1, as API.md says; more only for the
   * utilisation bench, which runs several slots in one process).
   */
  slots?: number;
}

/** Progress after `elapsed` of `total`: one decimal, never 100 before done. */
export function progressAt(elapsed: number, total: number): number {
  return Math.min(99, Math.floor((elapsed / total) * 1000) / 10);
}

export class SimulatedAdapter implements ModelAdapter {
  readonly slots: readonly SlotInfo[];

  constructor(private readonly deps: SimulatedDeps) {
    const n = deps.slots ?? 1;
    this.slots = Array.from({ length: n }, (_, i) => ({
      id: n === 1
        ? `simulated:${deps.workerId}`
        : `simulated:${deps.workerId}:${i + 1}`,
      kind: "simulated" as const,
    }));
  }

  healthy(): Promise<boolean> {
    return Promise.resolve(true);
  }

  async run(_slot: SlotInfo, run: ModelRun): Promise<ModelResult> {
    const { clock, modelMs } = this.deps;
    const start = run.job.startedAt ?? clock.now();
    const encoderStop = new AbortController();
    const onAbort = () => encoderStop.abort();
    run.signal.addEventListener("abort", onAbort, { once: true });
    const encoding = this.deps.encoder.makeClip({
      input: run.input,
      output: run.clip.video,
      fragOutput: run.clip.fragments,
      width: run.job.image.width,
      height: run.job.image.height,
      orientation: run.job.image.orientation,
      signal: encoderStop.signal,
    });
    // Failing now frees the slot at once; success waits for the time to be up.
    const failed = encoding.then(() => new Promise<never>(() => {}));
    try {
      await Promise.race([
        run.wait(
          start + modelMs,
          (now) => run.progress(progressAt(now - start, modelMs)),
        ),
        failed,
      ]);
      // Time is up; a slower encode ends the run when it is done.
      await encoding;
      return "clip";
    } catch (e) {
      if (run.signal.aborted) throw run.signal.reason;
      throw encodeFailure(e);
    } finally {
      run.signal.removeEventListener("abort", onAbort);
      encoderStop.abort();
      await encoding.catch(() => {});
    }
  }
}

function encodeFailure(error: unknown): ModelError {
  if (error instanceof EncodeError && error.code !== "encode_aborted") {
    return new ModelError(error.code, error.message);
  }
  return new ModelError(
    "encode_failed",
    "The video could not be made from this image.",
  );
}
