/** Builds the API's Job JSON for route handlers and the page. */
import type { Clock } from "../queue/clock.ts";
import { getProgress, type JobRecord, type Progress } from "../queue/jobs.ts";
import { type QueueState, type QueueView, toApiJob } from "../queue/view.ts";
import type { ApiJob, ApiLine } from "../shared/api.ts";
import { claim, sign } from "./session.ts";

export interface ViewDeps {
  kv: Deno.Kv;
  clock: Clock;
  queue: QueueView;
  key: CryptoKey;
  config: { modelMs: number };
}

/** How long a video URL works (API.md: an hour at most). */
export const VIDEO_URL_TTL_MS = 15 * 60_000;

/** A short-lived video address bound to the job and its owner's session. */
export async function videoUrl(
  key: CryptoKey,
  job: Pick<JobRecord, "id" | "session">,
  now: number,
): Promise<{ url: string; expiresAt: number }> {
  const expiresAt = now + VIDEO_URL_TTL_MS;
  const sig = await sign(
    key,
    "video",
    videoClaim(job.id, job.session, expiresAt),
  );
  return { url: `/media/${job.id}?exp=${expiresAt}&sig=${sig}`, expiresAt };
}

/** What a video URL's signature covers. */
export const videoClaim = (id: string, session: string, exp: number) =>
  claim(id, session, exp);

/** Views of several jobs: one queue read, progress read only for running ones. */
export async function viewJobs(
  deps: ViewDeps,
  jobs: JobRecord[],
  /** The line as read already (a job just queued), sparing a second read. */
  read?: QueueState,
): Promise<ApiJob[]> {
  const queue = read ??
    await deps.queue.state(jobs.some((j) => j.status === "queued"));
  const progress = await getProgress(
    deps.kv,
    jobs.filter((j) => j.status === "processing").map((j) => j.id),
  );
  const now = deps.clock.now();
  return Promise.all(jobs.map(async (job) =>
    toApiJob(job, {
      queue,
      progress: progress.get(job.id) ?? null,
      now,
      modelMs: deps.config.modelMs,
      video: job.status === "done" ? await videoUrl(deps.key, job, now) : null,
    })
  ));
}

/** The view of one job whose progress is already known (SSE). */
export async function viewSnapshot(
  deps: ViewDeps,
  job: JobRecord,
  progress: Progress | null,
): Promise<ApiJob> {
  const now = deps.clock.now();
  return toApiJob(job, {
    queue: await deps.queue.state(),
    progress,
    now,
    modelMs: deps.config.modelMs,
    video: job.status === "done" ? await videoUrl(deps.key, job, now) : null,
  });
}

/** The whole line in a few numbers, for the page's summary (no positions listed). */
export async function viewLine(
  deps: Pick<ViewDeps, "queue">,
): Promise<ApiLine> {
  const { depth, running, liveSlots } = await deps.queue.state(false);
  return {
    waiting: depth,
    running: running.length,
    slots: Math.max(liveSlots, running.length),
  };
}
