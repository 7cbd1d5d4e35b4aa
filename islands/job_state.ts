/**
 * The page's job state, as plain functions so that they are tested without a
 * browser. The islands only wire them to events and render the result.
 */
import type { ApiJob } from "../queue/view.ts";

export type { ApiJob };

export const FINAL = new Set(["done", "failed", "cancelled"]);

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
  if (FINAL.has(current.status) && !FINAL.has(next.status)) return current;
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

/** "1 min 35 s" / "40 s". */
export function formatSeconds(total: number): string {
  const s = Math.max(0, Math.round(total));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  return s % 60 ? `${m} min ${s % 60} s` : `${m} min`;
}

/** The state in words. */
export function describe(job: ApiJob): string {
  switch (job.status) {
    case "queued":
      return job.position === 1 ? "Next in line" : `#${job.position} in line`;
    case "processing":
      return "Making the video";
    case "done":
      return "Video ready";
    case "failed":
      return "Failed";
    case "cancelled":
      return "Cancelled";
  }
}

/** The sentence to show for an error answer of the API, never raw JSON. */
export function errorSentence(status: number, body: unknown): string {
  const message = (body as { error?: { message?: unknown } })?.error?.message;
  if (typeof message === "string" && message) return message;
  return `The upload failed (HTTP ${status}); try again.`;
}
