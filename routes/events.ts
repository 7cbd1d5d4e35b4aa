/**
 * `GET /api/jobs/{id}/events` (API.md): `event: job` with the Job JSON, at
 * once on connect, on every change of status or position, and with every
 * progress write while processing (≥ 4/s); the stream ends after a final
 * state. Fed by the shared per-job watch in {@link JobHub}.
 */
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import type { AppDeps } from "../app.ts";
import { FINAL_STATUSES, getJob } from "../queue/jobs.ts";
import type { JobSnapshot } from "../queue/hub.ts";
import type { ApiJob } from "../queue/view.ts";
import { notFound } from "./errors.ts";
import type { SessionEnv } from "./session.ts";
import { viewSnapshot } from "./_views.ts";
import { jobIdParam } from "./_validate.ts";

/** A comment line this often keeps proxies from closing an idle stream. */
export const HEARTBEAT_MS = 15_000;

/** What, if it changed, is worth an event (the ETA alone is not). */
const signature = (j: ApiJob) =>
  `${j.status}|${j.position}|${j.progress}|${j.error?.code ?? ""}`;

export function eventRoutes(deps: AppDeps) {
  return new Hono<SessionEnv>().get("/:id/events", jobIdParam, async (c) => {
    const { id } = c.req.valid("param");
    const job = await getJob(deps.kv, id);
    if (!job || job.session !== c.get("session")) throw notFound();
    c.header("X-Accel-Buffering", "no"); // nginx: do not buffer the stream
    return streamSSE(c, async (stream) => {
      let latest: JobSnapshot | null = null;
      let wake = () => {};
      const unsubscribe = deps.hub.subscribe(id, (snapshot) => {
        latest = snapshot;
        wake();
      });
      stream.onAbort(() => {
        unsubscribe();
        wake();
      });
      const onShutdown = () => wake();
      deps.shutdown.addEventListener("abort", onShutdown);
      let lastSent = "";
      try {
        while (!stream.aborted && !stream.closed && !deps.shutdown.aborted) {
          if (!latest) {
            const timer = setTimeout(() => wake(), HEARTBEAT_MS);
            await new Promise<void>((r) => (wake = r));
            clearTimeout(timer);
            if (deps.shutdown.aborted) break;
            if (!latest) {
              await stream.write(": ping\n\n");
              continue;
            }
          }
          const snapshot: JobSnapshot = latest;
          latest = null;
          if (!snapshot.job) break; // expired or deleted
          const view = await viewSnapshot(
            deps,
            snapshot.job,
            snapshot.progress,
          );
          const sig = signature(view);
          if (sig === lastSent) continue;
          lastSent = sig;
          await stream.writeSSE({
            event: "job",
            id: snapshot.version,
            data: JSON.stringify(view),
          });
          if (FINAL_STATUSES.has(view.status)) break;
        }
      } finally {
        unsubscribe();
        deps.shutdown.removeEventListener("abort", onShutdown);
      }
    });
  });
}
