/**
 * What the worker loop knows of a model (API.md "Models"; DESIGN.md "A model
 * is an adapter"): run this job on this slot, report progress, honour this
 * abort signal, hand back a video file. `simulated`, `command` and `cog`
 * implement it; turning the model's video into the contract's MP4 and the
 * read-only copies is one media step that every adapter shares.
 */
import type { JobRecord } from "../jobs.ts";

/** One model slot: runs one job at a time. */
export interface SlotInfo {
  /** Stable across processes: a Cog URL, or `command:<worker id>`. */
  id: string;
  kind: "simulated" | "command" | "cog";
}

/** One run of a model on one job, on one slot. */
export interface ModelRun {
  readonly job: JobRecord;
  /** The job's image, a local file. */
  readonly input: string;
  /**
   * Where the model's own video goes (any container ffmpeg reads), a local
   * file in the job's workspace.
   */
  readonly output: string;
  /**
   * Where the contract's clip goes when the model makes it itself (the
   * simulated model, result `"clip"`): the MP4 and its fragmented copy.
   */
  readonly clip: { readonly video: string; readonly fragments: string };
  /** Reports 0-100; the worker keeps it monotonic and below 100 until done. */
  progress(percent: number): void;
  /** Aborts on cancel, graceful stop or `MODEL_TIMEOUT_MS` (see its reason). */
  readonly signal: AbortSignal;
  /**
   * For a model whose run is a function of time (the simulated one): calls
   * `onTick(now)` at each of the worker's ticks and resolves at the first
   * tick at or after `at` (the worker's clock), which the worker schedules
   * a tick on; rejects with the signal's reason on abort. The worker's tick
   * is then the run's only timer.
   */
  wait(at: number, onTick?: (now: number) => void): Promise<void>;
  /**
   * Tells the worker the model has taken the job (its program started, its
   * prediction accepted), so that the encoder's child for the transcode
   * starts now, while the model runs: when the video comes, only the
   * transcode remains. Not called by a model that makes the clip itself, or
   * when the job could not start (a busy slot).
   */
  begun?(): void;
}

/**
 * How a run ended well: the model wrote its video at `ModelRun.output`, or
 * (the simulated model) the contract's clip is already made.
 */
export type ModelResult = "video" | "clip";

/** Why a run failed: the job fails with this code and sentence. */
export class ModelError extends Error {
  override name = "ModelError";
  constructor(
    readonly code:
      | "model_failed"
      | "model_timeout"
      | "model_output"
      | "encode_failed"
      | "encode_timeout",
    message: string,
  ) {
    super(message);
  }
}

/**
 * The slot turned out to be busy with another prediction (Cog: `409`, or
 * `503` while its setup runs): the job did not start and goes back to its
 * place in line, without counting an attempt; the slot is tried again later.
 */
export class SlotBusy extends Error {
  override name = "SlotBusy";
  constructor(readonly slot: string, message = `slot ${slot} is busy`) {
    super(message);
  }
}

export interface ModelAdapter {
  /** The slots this process offers. */
  readonly slots: readonly SlotInfo[];
  /**
   * Whether `slot` takes work now (Cog: `/health-check` is READY). A slot
   * that does not is shown `unhealthy` and claims no job.
   */
  healthy(slot: SlotInfo, signal?: AbortSignal): Promise<boolean>;
  /**
   * Runs `run` on `slot`; resolves when done, rejects with {@link ModelError},
   * with {@link SlotBusy} when the job could not start there (it waits), or
   * with `run.signal.reason` once the signal aborted it.
   */
  run(slot: SlotInfo, run: ModelRun): Promise<ModelResult>;
}
