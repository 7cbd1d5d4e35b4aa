/**
 * `/api/jobs` (API.md): upload, list, read, cancel or delete, retry. Every job belongs to the
 * session that made it; to any other session it does not exist (404).
 *
 * A browser's own form post (JavaScript off: `Accept: text/html`) ends on a
 * page, never on raw JSON: 303 to the job's page, or the page again with the
 * refusal's sentence.
 */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context } from "hono";
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
import { describedOnly, errors, Job, JobIdParams, refuse } from "./_openapi.ts";
import { viewJobs } from "./_views.ts";

/** A browser navigating (a form post), as opposed to a script's fetch or curl. */
const wantsPage = (c: Context) =>
  /\btext\/html\b/.test(c.req.header("accept") ?? "");

/** What `POST /api/jobs` reads; described only: the route streams it (routes/_upload.ts). */
const UploadForm = z.object({
  image: z.file().describe("The picture: PNG, JPEG or WebP."),
});

const onlyJobIds = refuse({ param: notFound });

const upload = createRoute({
  operationId: "uploadJob",
  method: "post",
  path: "/",
  tags: ["jobs"],
  summary: "Upload a picture; a job is queued",
  description:
    "The body is streamed to disk and refused as soon as it breaks a limit; " +
    "nothing is queued and nothing is left on disk by a refused upload. " +
    "A browser's own form post (`Accept: text/html`) gets a 303 to the " +
    "job's page instead, or the page again with the refusal's sentence.",
  request: {
    body: {
      required: true,
      content: {
        "multipart/form-data": {
          schema: {
            ...describedOnly(UploadForm),
            properties: {
              image: {
                type: "string",
                format: "binary",
                contentMediaType: "application/octet-stream",
                description: "The picture: PNG, JPEG or WebP.",
              },
            },
          },
        },
        "image/*": {
          schema: {
            type: "string",
            format: "binary",
            description: "The picture itself as the raw body.",
          },
        },
      },
    },
  },
  responses: {
    202: {
      description: "Queued.",
      headers: z.object({ Location: z.string() }),
      content: { "application/json": { schema: Job } },
    },
    303: {
      description: "A browser's form post: the job's page.",
      headers: z.object({ Location: z.string() }),
    },
    ...errors({
      400: ["bad_request"],
      403: ["forbidden_origin"],
      408: ["upload_timeout"],
      413: ["too_large"],
      415: ["unsupported_type"],
      422: ["invalid_image"],
      429: ["queue_full", "rate_limited", "too_many_waiting"],
      503: ["busy", "paused", "unavailable"],
      507: ["insufficient_storage"],
    }),
  },
});

const list = createRoute({
  operationId: "listJobs",
  method: "get",
  path: "/",
  tags: ["jobs"],
  summary: "This session's jobs, newest first",
  responses: {
    200: {
      description: "The jobs.",
      content: {
        "application/json": { schema: z.object({ jobs: z.array(Job) }) },
      },
    },
    ...errors({}),
  },
});

const read = createRoute({
  operationId: "getJob",
  method: "get",
  path: "/{id}",
  tags: ["jobs"],
  summary: "One job",
  request: { params: JobIdParams },
  responses: {
    200: {
      description: "The job.",
      content: { "application/json": { schema: Job } },
    },
    ...errors({ 404: ["not_found"] }),
  },
});

const cancel = createRoute({
  operationId: "cancelJob",
  method: "delete",
  path: "/{id}",
  tags: ["jobs"],
  summary: "Cancel a queued or running job; delete an ended one",
  description:
    "A running job stops within a second and the model takes the next one. " +
    "A finished job (`done`, `failed`, `cancelled`) is deleted with its " +
    "image and video: 204, and from then on 404 everywhere.",
  request: { params: JobIdParams },
  responses: {
    200: {
      description: "Cancelled.",
      content: { "application/json": { schema: Job } },
    },
    204: { description: "Deleted with its image and video." },
    ...errors({
      403: ["forbidden_origin"],
      404: ["not_found"],
    }),
  },
});

const retry = createRoute({
  operationId: "retryJob",
  method: "post",
  path: "/{id}/retry",
  tags: ["jobs"],
  summary: "Try a failed or cancelled job again",
  description:
    "A new job made from the same image (kept until `RETENTION_HOURS`), at " +
    "the end of the line, through the same refusals as an upload.",
  request: { params: JobIdParams },
  responses: {
    202: {
      description: "Queued: the new job.",
      headers: z.object({ Location: z.string() }),
      content: { "application/json": { schema: Job } },
    },
    ...errors({
      403: ["forbidden_origin"],
      404: ["not_found"],
      409: ["not_retryable"],
      429: ["queue_full", "rate_limited", "too_many_waiting"],
      503: ["paused", "unavailable"],
      507: ["insufficient_storage"],
    }),
  },
});

export function jobRoutes(deps: AppDeps) {
  const { kv, clock, store, config } = deps;
  const view = async (
    job: Parameters<typeof viewJobs>[1][number],
    queue?: Parameters<typeof viewJobs>[2],
  ) => (await viewJobs(deps, [job], queue))[0];

  return new OpenAPIHono<SessionEnv>()
    .openapi(upload, async (c) => {
      try {
        const { job, position, queue } = await acceptUpload(
          deps,
          c.req.raw,
          c.get("session"),
          c.get("client"),
        );
        deps.log.info("job.queued", { job: job.id, position });
        deps.ring();
        if (wantsPage(c)) return c.redirect(`/jobs/${job.id}`, 303);
        return c.json(
          await view(job, queue),
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
    .openapi(list, async (c) => {
      const jobs = await listSessionJobs(kv, c.get("session"));
      return c.json({ jobs: await viewJobs(deps, jobs) }, 200);
    })
    .openapi(read, async (c) => {
      const { id } = c.req.valid("param");
      return c.json(
        await view(await ownedJob(kv, c.get("session"), id)),
        200,
      );
    }, onlyJobIds)
    .openapi(cancel, async (c) => {
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
      return c.json(await view(result.job), 200);
    }, onlyJobIds)
    .openapi(retry, async (c) => {
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
      const { job, position, queue } = await acceptRetry(
        deps,
        original,
        { id, versionstamp: entry.versionstamp! },
        session,
        c.get("client"),
      );
      deps.ring();
      deps.log.info("job.queued", { job: job.id, position, retryOf: id });
      return c.json(
        await view(job, queue),
        202,
        { Location: `/api/jobs/${job.id}` },
      );
    }, onlyJobIds);
}
