// This module is browser compatible.
/**
 * The API's job JSON (API.md) and the words it is made of, shared by the
 * server that builds it (queue/view.ts) and the page that renders it
 * (islands/). Types and plain data only.
 */

/** The image types the service accepts (the server decides by magic bytes). */
export const IMAGE_TYPES = ["image/png", "image/jpeg", "image/webp"] as const;

/** One of {@link IMAGE_TYPES}. */
export type ImageType = typeof IMAGE_TYPES[number];

/** A job's life: queued → processing → done, failed or cancelled. */
export type JobStatus =
  | "queued"
  | "processing"
  | "done"
  | "failed"
  | "cancelled";

/** The statuses a job never leaves. */
export const FINAL_STATUSES: ReadonlySet<JobStatus> = new Set([
  "done",
  "failed",
  "cancelled",
]);

/** Why a job failed: an API error code and a sentence. */
export interface JobError {
  code: string;
  message: string;
}

/** A job as `GET /api/jobs/{id}` returns it. */
export interface ApiJob {
  id: string;
  status: JobStatus;
  position: number | null;
  progress: number;
  etaSeconds: number | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  image: { type: string; width: number; height: number; bytes: number };
  video: { url: string; type: "video/mp4"; expiresAt: string } | null;
  error: JobError | null;
}

/**
 * The whole line as `GET /api/line` gives it (the page's summary): jobs
 * waiting in all, jobs being made, and the model slots that take work (0
 * when no worker is up).
 */
export interface ApiLine {
  waiting: number;
  running: number;
  slots: number;
}
