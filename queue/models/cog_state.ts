/**
 * A Cog prediction's state in KV. Cog has no `GET /predictions/{id}`: its
 * webhooks are the only record of a prediction (/work/notes/cog.md §6), and
 * any web process may receive them, so the webhook route writes what it
 * learnt here and the worker that runs the job reads it. A restarted worker
 * finds here whether its job's prediction is in flight or done, and never
 * starts a second one.
 *
 * Only what the job needs is kept (status, progress, the last log line, the
 * error, where the output is), never the logs or a video: a KV value holds
 * at most 64 KiB.
 */
import { keys } from "../keys.ts";

/** Cog's prediction statuses, plus ours before Cog acknowledged the PUT. */
export type CogStatus =
  | "sending"
  | "starting"
  | "processing"
  | "succeeded"
  | "failed"
  | "canceled";

const TERMINAL = new Set<CogStatus>(["succeeded", "failed", "canceled"]);
/** Whether Cog is done with a prediction in this status (terminal is sticky). */
export const isTerminal = (s: CogStatus) => TERMINAL.has(s);

/** Where a succeeded prediction's video is. */
export type CogOutput =
  /** An `http(s):` URL to fetch it from. */
  | { url: string }
  /** A `data:` URL the webhook route decoded into this local file. */
  | { file: string }
  /** Not a video URL, or too large: the job fails with this sentence. */
  | { problem: string };

/** What KV keeps of one job's prediction. */
export interface CogState {
  /** The Cog server's URL: the prediction lives there. */
  slot: string;
  status: CogStatus;
  /** From the last tqdm bar in the logs, 0-100, or null before any. */
  progress: number | null;
  /** The last non-empty log line, short. */
  log: string;
  /** Cog's `error` when failed (or ours when its webhook was unreadable). */
  error: string | null;
  output: CogOutput | null;
  /** When the PUT was sent, epoch ms. */
  sentAt: number;
}

/** One webhook's news, already reduced to what {@link CogState} keeps. */
export interface CogEvent {
  status: Exclude<CogStatus, "sending">;
  progress: number | null;
  log: string;
  error: string | null;
  output: CogOutput | null;
}

/**
 * How long a prediction's record outlives the job's run: a worker that died
 * right after the end finds the result, not a reason to run it again.
 */
export const COG_STATE_TTL_MS = 24 * 3_600_000;
/** Log lines and errors are cut to this many characters. */
export const COG_TEXT_MAX = 2_000;

/** Each KV handle's in-process listeners: a write here wakes a reader here at once. */
const wakers = new WeakMap<Deno.Kv, EventTarget>();
const wakerOf = (kv: Deno.Kv) => {
  let w = wakers.get(kv);
  if (!w) wakers.set(kv, w = new EventTarget());
  return w;
};

/**
 * Resolves when this process writes job `id`'s state, after `ms`, or when
 * `signal` aborts, whichever is first. Other processes' writes are seen by
 * polling (`kv.watch` does not see them), which `ms` bounds.
 */
export function cogStateChange(
  kv: Deno.Kv,
  id: string,
  ms: number,
  signal?: AbortSignal,
): Promise<void> {
  return new Promise((resolve) => {
    const target = wakerOf(kv);
    const done = () => {
      clearTimeout(timer);
      target.removeEventListener(id, done);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    target.addEventListener(id, done);
    signal?.addEventListener("abort", done);
    if (signal?.aborted) done();
  });
}

/** Job `id`'s prediction, or null when none was sent (or it was forgotten). */
export async function readCogState(
  kv: Deno.Kv,
  id: string,
): Promise<CogState | null> {
  return (await kv.get<CogState>(keys.cogPrediction(id))).value;
}

/** The job whose prediction runs on the Cog server at `url`, if ours. */
export async function cogSlotJob(
  kv: Deno.Kv,
  url: string,
): Promise<{ id: string; state: CogState | null } | null> {
  const slot = await kv.get<string>(keys.cogSlot(url));
  if (!slot.value) return null;
  return { id: slot.value, state: await readCogState(kv, slot.value) };
}

/**
 * Records that job `id`'s prediction is about to be sent to `url` (before
 * the PUT, so a worker that dies in between knows it may have gone out).
 */
export async function beginCogPrediction(
  kv: Deno.Kv,
  id: string,
  url: string,
  now: number,
): Promise<void> {
  const state: CogState = {
    slot: url,
    status: "sending",
    progress: null,
    log: "",
    error: null,
    output: null,
    sentAt: now,
  };
  await kv.atomic()
    .set(keys.cogPrediction(id), state, { expireIn: COG_STATE_TTL_MS })
    .set(keys.cogSlot(url), id, { expireIn: COG_STATE_TTL_MS })
    .commit();
  wakerOf(kv).dispatchEvent(new Event(id));
}

/**
 * Applies one webhook's news to job `id`'s prediction: a terminal status is
 * sticky and frees the slot; non-terminal news never moves a prediction
 * back to an earlier status (webhooks may arrive out of order). Says
 * whether it was recorded, came after the end (and changed nothing), or
 * names no prediction we know of (the route answers 404).
 */
export async function recordCogEvent(
  kv: Deno.Kv,
  id: string,
  event: CogEvent,
): Promise<"recorded" | "late" | "unknown"> {
  for (;;) {
    const entry = await kv.get<CogState>(keys.cogPrediction(id));
    const old = entry.value;
    if (!old) return "unknown";
    if (isTerminal(old.status)) return "late";
    const terminal = isTerminal(event.status);
    const next: CogState = {
      ...old,
      status: terminal || old.status === "sending" ||
          old.status === "starting"
        ? event.status
        : old.status,
      progress: event.progress ?? old.progress,
      log: event.log || old.log,
      error: event.error ?? old.error,
      output: terminal ? event.output : null,
    };
    const slotKey = keys.cogSlot(old.slot);
    const slot = await kv.get<string>(slotKey);
    const op = kv.atomic().check(entry).check(slot)
      .set(keys.cogPrediction(id), next, { expireIn: COG_STATE_TTL_MS });
    if (terminal && slot.value === id) op.delete(slotKey);
    if ((await op.commit()).ok) {
      wakerOf(kv).dispatchEvent(new Event(id));
      return "recorded";
    }
  }
}

/**
 * Marks job `id`'s prediction acknowledged by Cog (its PUT got 202), unless
 * a webhook already moved it on.
 */
export async function acknowledgeCogPrediction(
  kv: Deno.Kv,
  id: string,
): Promise<void> {
  await recordCogEvent(kv, id, {
    status: "starting",
    progress: null,
    log: "",
    error: null,
    output: null,
  });
}

/**
 * Forgets job `id`'s prediction (it did not start, or it was canceled), and
 * frees its slot if the slot still names it.
 */
export async function forgetCogPrediction(
  kv: Deno.Kv,
  id: string,
): Promise<void> {
  for (;;) {
    const entry = await kv.get<CogState>(keys.cogPrediction(id));
    if (!entry.value) return;
    const slotKey = keys.cogSlot(entry.value.slot);
    const slot = await kv.get<string>(slotKey);
    const op = kv.atomic().check(entry).check(slot)
      .delete(keys.cogPrediction(id));
    if (slot.value === id) op.delete(slotKey);
    if ((await op.commit()).ok) return;
  }
}

/** tqdm's bar: ` 42%|████▏     | 21/50 [...]` (the count is what we trust). */
const TQDM_BAR = /(\d{1,3})%\|[^|]*\|\s*(\d+)\/(\d+)/;
/** Only the end of the logs is read: the bar we want is the last one. */
const LOG_TAIL_CHARS = 4_096;

/**
 * The last tqdm bar's percentage in `logs`, or null when there is none.
 * tqdm redraws with `\r`; Cog keeps it (new server) or makes it a newline
 * (old one), so both split lines. A later bar may start again from 0.
 *
 * @example
 * tqdmProgress("Loading\n\r  0%|    | 0/50\r 42%|██▏  | 21/50 [00:10<00:14]") // 42
 */
export function tqdmProgress(logs: string): number | null {
  const lines = logs.slice(-LOG_TAIL_CHARS).split(/[\r\n]+/);
  for (let i = lines.length - 1; i >= 0; i--) {
    const m = TQDM_BAR.exec(lines[i]);
    if (!m) continue;
    const [n, total] = [Number(m[2]), Number(m[3])];
    return total > 0
      ? Math.min(100, Math.floor((100 * n) / total))
      : Math.min(100, Number(m[1]));
  }
  return null;
}

/** The last non-empty line of `logs`, cut to {@link COG_TEXT_MAX}. */
export function lastLogLine(logs: string): string {
  const lines = logs.slice(-LOG_TAIL_CHARS).split(/[\r\n]+/);
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i].trim();
    if (line) return line.slice(0, COG_TEXT_MAX);
  }
  return "";
}
