/**
 * The page's job state, as plain functions so that they are tested without a
 * browser. The islands only wire them to events and render the result.
 */
import {
  type ApiJob,
  type ApiLine,
  FINAL_STATUSES,
  IMAGE_TYPES,
} from "../shared/api.ts";
import { formatSize } from "../shared/format.ts";
import { type Lang, t } from "./i18n.ts";

/** Adds or replaces a job, keeping the list newest first and free of duplicates. */
export function upsertJob(jobs: ApiJob[], job: ApiJob): ApiJob[] {
  const rest = jobs.filter((j) => j.id !== job.id);
  const out = [...rest, job];
  out.sort((
    a,
    b,
  ) => (a.createdAt < b.createdAt
    ? 1
    : a.createdAt > b.createdAt
    ? -1
    : a.id < b.id
    ? 1
    : -1)
  );
  return out;
}

/**
 * Applies an event to the job it describes. A late event never moves a job
 * back from a final state, nor its progress backwards while it runs.
 */
export function applyEvent(current: ApiJob, next: ApiJob): ApiJob {
  if (FINAL_STATUSES.has(current.status) && !FINAL_STATUSES.has(next.status)) {
    return current;
  }
  if (
    current.status === "processing" && next.status === "processing" &&
    next.progress < current.progress
  ) {
    return { ...next, progress: current.progress };
  }
  return next;
}

/** "12.5 %": one decimal, as the progress text shows it. */
export function formatPercent(progress: number): string {
  return `${(Math.floor(progress * 10) / 10).toFixed(1)} %`;
}

/**
 * What the page shows between two server events: the progress and ETA run
 * on with the clock, so the bar moves smoothly, but never past 99 %, never
 * more than 2 s ahead of the last event, and never backwards: an event that
 * says less than is shown is absorbed by holding the shown value.
 */
export interface Shown {
  progress: number;
  etaSeconds: number | null;
}

export function shownAt(
  job: ApiJob,
  receivedAt: number,
  now: number,
  modelMs: number,
  before: Shown | null,
): Shown {
  const since = Math.max(0, now - receivedAt);
  let progress = job.progress;
  if (job.status === "processing") {
    const ahead = (Math.min(since, 2000) / modelMs) * 100;
    progress = Math.min(99, job.progress + ahead);
    if (before && before.progress > progress) {
      progress = Math.min(99, before.progress);
    }
  } else if (job.status === "done") {
    progress = 100;
  }
  const etaSeconds = job.etaSeconds === null
    ? null
    : Math.max(0, job.etaSeconds - since / 1000);
  return { progress, etaSeconds };
}

/** The page's sentence for a refused upload, in `lang`, never raw JSON. */
export function uploadError(
  lang: Lang,
  status: number,
  body: unknown,
  retryAfter: string | null,
  maxBytes: number,
): string {
  const code = (body as { error?: { code?: unknown } })?.error?.code;
  const wait = formatDuration(lang, Number(retryAfter) || 1);
  const size = formatSize(maxBytes, { compact: true });
  switch (code) {
    case "bad_request":
    case "forbidden_origin":
    case "too_large":
    case "unsupported_type":
    case "invalid_image":
    case "queue_full":
    case "rate_limited":
    case "too_many_waiting":
    case "unavailable":
    case "insufficient_storage":
    case "busy":
    case "paused":
    case "upload_timeout":
      return t(lang, `err_${code}`, { t: wait, size });
  }
  return t(lang, "err_other", { status });
}

/**
 * The position a queued job moved back to, or null: the line is fair
 * (API.md, "Order"), so a newcomer's first picture may be placed ahead of a
 * waiting one. Compared with the last state the page showed, so each move
 * is told once.
 */
export function movedBackTo(
  before: Pick<ApiJob, "status" | "position"> | undefined,
  next: Pick<ApiJob, "status" | "position">,
): number | null {
  if (before?.status !== "queued" || next.status !== "queued") return null;
  if (before.position === null || next.position === null) return null;
  return next.position > before.position ? next.position : null;
}

/** "1 min 35 s" / "95 秒"-style durations. */
export function formatDuration(lang: Lang, seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return t(lang, "sec", { n: s });
  const m = Math.floor(s / 60);
  return s % 60 ? t(lang, "minSec", { m, s: s % 60 }) : t(lang, "min", { m });
}

/** The state in words, in `lang`. */
export function stateText(
  lang: Lang,
  job: Pick<ApiJob, "status" | "position">,
): string {
  switch (job.status) {
    case "queued":
      return job.position === 1
        ? t(lang, "next")
        : t(lang, "inLine", { n: job.position ?? "?" });
    case "processing":
      return t(lang, "processing");
    default:
      return t(lang, job.status);
  }
}

/** A failed job's reason in `lang`. */
export function jobError(lang: Lang, job: ApiJob): string {
  return job.error?.code === "model_crashed"
    ? t(lang, "err_crashed")
    : t(lang, "err_job");
}

/** Client-side checks with the server's own limits (the server checks again). */
export function checkFile(
  lang: Lang,
  file: { name: string; size: number; type: string },
  maxBytes: number,
): string | null {
  if (!(IMAGE_TYPES as readonly string[]).includes(file.type)) {
    return t(lang, "err_type", { name: file.name });
  }
  if (file.size > maxBytes) {
    return t(lang, "err_size", {
      name: file.name,
      size: formatSize(maxBytes, { compact: true }),
    });
  }
  return null;
}

/** The summary above the jobs: the model, the whole line, and where yours are. */
export interface LineSummary {
  model: "busy" | "free" | "off";
  modelText: string;
  waitingText: string;
  /** Null when none of the session's pictures waits or runs. */
  yoursText: string | null;
}

/**
 * The line in words. `line` comes from `GET /api/line` and may be a moment
 * older than the jobs' own events, so the total is never shown below a
 * position the page already knows ("#5 of 4" cannot happen).
 */
export function lineSummary(
  lang: Lang,
  jobs: Pick<ApiJob, "status" | "position">[],
  line: ApiLine,
): LineSummary {
  const positions = jobs.filter((j) => j.status === "queued")
    .map((j) => j.position).filter((p): p is number => p !== null);
  const mineRunning = jobs.some((j) => j.status === "processing");
  const waiting = Math.max(line.waiting, ...positions, 0);
  const model = line.running > 0 || mineRunning
    ? "busy"
    : line.slots > 0
    ? "free"
    : "off";
  return {
    model,
    modelText: t(
      lang,
      model === "busy"
        ? "modelBusy"
        : model === "free"
        ? "modelFree"
        : "modelOff",
    ),
    waitingText: waiting === 0
      ? t(lang, "waitingNone")
      : waiting === 1
      ? t(lang, "waitingOne")
      : t(lang, "waitingAll", { n: waiting }),
    yoursText: positions.length > 0
      ? t(lang, "yourNext", { n: Math.min(...positions), total: waiting })
      : mineRunning
      ? t(lang, "yoursRunning")
      : null,
  };
}
