/**
 * `/api/jobs` (API.md): upload, list, read, cancel. Every job belongs to the
 * session that made it; to any other session it does not exist (404).
 *
 * A browser's own form post (JavaScript off: `Accept: text/html`) ends on a
 * page, never on raw JSON: 303 to the job's page, or the page again with the
 * refusal's sentence.
 */
import { type Context, Hono } from "hono";
import { cancelJob, listSessionJobs } from "../queue/jobs.ts";
import { ownedJob } from "./_access.ts";
import type { AppDeps } from "./deps.ts";
import { ApiError, notFound } from "./errors.ts";
import { refusedPage } from "./pages.tsx";
import type { SessionEnv } from "./session.ts";
import { acceptUpload } from "./_upload.ts";
import { jobIdParam } from "./_validate.ts";
import { viewJobs, viewLine } from "./_views.ts";

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
      const [views, line] = await Promise.all([
        viewJobs(deps, jobs),
        viewLine(deps),
      ]);
      return c.json({ jobs: views, line });
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
      const result = await cancelJob(
        kv,
        job.id,
        clock.now(),
        config.retentionMs,
      );
      if (result === null) throw notFound();
      if (result === "final") {
        throw new ApiError(
          409,
          "not_cancellable",
          `This job has already ended (${job.status}).`,
        );
      }
      // A running job's encoder has its own copy; the worker stops within a tick.
      await store.removeImage(job.id);
      return c.json(await view(result));
    });
}
