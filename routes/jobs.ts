/**
 * `/api/jobs` (API.md): upload, list, read, cancel or delete, retry. Every job belongs to the
 * session that made it; to any other session it does not exist (404).
 *
 * A browser's own form post (JavaScript off: `Accept: text/html`) ends on a
 * page, never on raw JSON: 303 to the job's page, or the page again with the
 * refusal's sentence.
 */
import { type Context, Hono } from "hono";
import {
  discardJob,
  getJobEntry,
  isRetryable,
  listSessionJobs,
} from "../queue/jobs.ts";
import { ownedJob } from "./_access.ts";
import type { AppDeps } from "./deps.ts";
import { ApiError, notFound, notRetryable } from "./errors.ts";
import { refusedPage } from "./pages.tsx";
import type { SessionEnv } from "./session.ts";
import { acceptRetry, acceptUpload } from "./_upload.ts";
import { jobIdParam } from "./_validate.ts";
import { viewJobs } from "./_views.ts";

/** A browser navigating (a form post), as opposed to a script's fetch or curl. */
const wantsPage = (c: Context) =>
  /\btext\/html\b/.test(c.req.header("accept") ?? "");

export function jobRoutes(deps: AppDeps) {
  const { kv, clock, store, config } = deps;
  const view = async (
    job: Parameters<typeof viewJobs>[1][number],
    known?: ReadonlyMap<string, number>,
  ) => (await viewJobs(deps, [job], known))[0];

  return new Hono<SessionEnv>()
    .post("/", async (c) => {
      try {
        const { job, position } = await acceptUpload(
          deps,
          c.req.raw,
          c.get("session"),
          c.get("client"),
        );
        deps.log.info("job.queued", { job: job.id, position });
        deps.ring();
        if (wantsPage(c)) return c.redirect(`/jobs/${job.id}`, 303);
        return c.json(
          await view(job, new Map([[job.id, position]])),
          202,
          { Location: `/api/jobs/${job.id}` },
        );
      } catch (e) {
        if (e instanceof ApiError && wantsPage(c)) {
          return refusedPage(deps, c, e);
        }
        throw e;
      }
    })
    .get("/", async (c) => {
      const jobs = await listSessionJobs(kv, c.get("session"));
      return c.json({ jobs: await viewJobs(deps, jobs) });
    })
    .get("/:id", jobIdParam, async (c) => {
      const { id } = c.req.valid("param");
      return c.json(await view(await ownedJob(kv, c.get("session"), id)));
    })
    .delete("/:id", jobIdParam, async (c) => {
      const job = await ownedJob(
        kv,
        c.get("session"),
        c.req.valid("param").id,
      );
      // Read queued or running: cancel (200), or, if it ended meanwhile,
      // the job as it now is (200). Read ended: the job, its image and its
      // video are deleted (204).
      const result = await discardJob(
        kv,
        job.id,
        clock.now(),
        config.retentionMs,
        { seen: job.status, maxKept: config.maxWaitingPerClient },
      );
      if (result === null) throw notFound();
      if (result.ended === "meanwhile") return c.json(await view(result.job));
      if (result.ended === "deleted") {
        await store.removeJob(job.id);
        deps.log.info("job.deleted", { job: job.id });
        return c.body(null, 204);
      }
      deps.log.info("job.cancelled", { job: job.id, was: job.status });
      // A running job's worker stops within a tick; its image stays for a retry.
      return c.json(await view(result.job));
    })
    .post("/:id/retry", jobIdParam, async (c) => {
      const session = c.get("session");
      const { id } = c.req.valid("param");
      const entry = await getJobEntry(kv, id);
      const original = entry.value;
      if (!original || original.session !== session) throw notFound();
      if (!isRetryable(original)) {
        throw notRetryable(
          original.status === "failed" || original.status === "cancelled"
            ? "This job's picture is no longer kept."
            : `Only a failed or cancelled job can be tried again; this one is ${original.status}.`,
        );
      }
      const { job, position } = await acceptRetry(
        deps,
        original,
        { id, versionstamp: entry.versionstamp! },
        session,
        c.get("client"),
      );
      deps.ring();
      deps.log.info("job.queued", { job: job.id, position, retryOf: id });
      return c.json(
        await view(job, new Map([[job.id, position]])),
        202,
        { Location: `/api/jobs/${job.id}` },
      );
    });
}
