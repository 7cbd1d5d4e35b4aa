/**
 * The operators' API (API.md, "Operators"): every session's jobs, the model
 * slots, pause and resume of intake, cancel of any job. Each call carries
 * `Authorization: Bearer <ADMIN_TOKEN>`; with `ADMIN_TOKEN` unset every
 * admin route answers 404, as if it did not exist.
 *
 * Mounted before the visitor's session and same-origin checks: a bearer
 * token is never sent by a browser on its own (no cookie is involved), so a
 * cross-site page cannot make an operator's browser call these (no CSRF),
 * and operators' scripts need no session. `secureHeaders` still applies.
 */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context, MiddlewareHandler } from "hono";
import { getPause, pauseIntake, resumeIntake } from "../queue/intake.ts";
import { getJob, InvalidCursor, listAllJobs } from "../queue/jobs.ts";
import { cancelJob } from "../queue/jobs.ts";
import { listSlots, totalUtilisation } from "../queue/slots.ts";
import type { AppDeps } from "./deps.ts";
import {
  ApiError,
  badRequest,
  notCancellable,
  notFound,
  unauthorized,
} from "./errors.ts";
import { sign, verify } from "./session.ts";
import { errors, Job, JobIdParams, refuse } from "./_openapi.ts";
import { viewJobs } from "./_views.ts";

type AdminDeps = Pick<
  AppDeps,
  "kv" | "clock" | "queue" | "key" | "config" | "ring" | "log"
>;

/** The app's own 404 (`app.notFound`), for every admin address without a token. */
export const nothingHere = () =>
  new ApiError(404, "not_found", "There is nothing at this address.");

/** What the signature of the token is made for (never a visitor's claim). */
const PURPOSE = "admin-token";

/**
 * Admits a request with the operators' bearer token; 404 for every request
 * when no token is configured, 401 for a missing or wrong one. The token is
 * compared as HMACs under the app's key (WebCrypto's verify compares in
 * constant time), so the time taken says nothing about how much of a guess
 * was right, nor about the token's length.
 */
export function adminAuth(
  deps: Pick<AppDeps, "key" | "config">,
): MiddlewareHandler {
  const token = deps.config.adminToken;
  const expected = token ? sign(deps.key, PURPOSE, token) : null;
  return async function adminAuth(c, next) {
    if (!expected) throw nothingHere();
    const header = c.req.header("authorization") ?? "";
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
    if (!m || !await verify(deps.key, PURPOSE, m[1], await expected)) {
      throw unauthorized();
    }
    await next();
  };
}

/** The pause as JSON: `{"paused": bool, "since": ISO time or null}`. */
async function pauseView(kv: Deno.Kv) {
  const pause = await getPause(kv);
  return {
    paused: pause !== null,
    since: pause ? new Date(pause.since).toISOString() : null,
  };
}

/** Jobs as operators see them: no `video` (no address of anyone's video). */
async function adminJobs(
  deps: AdminDeps,
  records: Parameters<typeof viewJobs>[1],
) {
  const views = await viewJobs(deps, records);
  return views.map(({ video: _, ...job }) => job);
}

/** The job statuses, for filters. */
const jobStatus = Job.shape.status;

/** The most jobs one page of the operators' list holds. */
export const ADMIN_JOBS_MAX = 200;

/**
 * `GET /api/admin/jobs?status=&limit=&cursor=`: a status filter, a page size
 * (50 by default, at most {@link ADMIN_JOBS_MAX}) and the previous page's
 * cursor; anything else malformed: 400.
 */
export const adminJobsQuerySchema = z.object({
  status: jobStatus.optional(),
  limit: z.coerce.number().int().min(1).max(ADMIN_JOBS_MAX).default(50),
  cursor: z.string().regex(/^[A-Za-z0-9_=+/-]{1,1024}$/).optional()
    .describe("The `cursor` of the previous page."),
});

const badQuery = () =>
  badRequest(
    `Query: status one of ${
      jobStatus.options.join(", ")
    }; limit 1-${ADMIN_JOBS_MAX}; cursor as a page returned it.`,
  );

/** A Job as operators see it: no `video` (no address of anyone's video). */
const AdminJob = Job.omit({ video: true }).openapi("AdminJob");

const Pause = z.object({
  paused: z.boolean(),
  since: z.iso.datetime().nullable(),
}).openapi("Pause");

/** What every admin route may answer besides its own. */
const adminErrors = {
  401: ["unauthorized"],
  404: ["not_found"],
} as const;

const admin = {
  tags: ["operators"],
  security: [{ adminToken: [] }],
  description:
    "`Authorization: Bearer <ADMIN_TOKEN>`; 401 without it, 404 when " +
    "`ADMIN_TOKEN` is unset.",
};

const listJobs = createRoute({
  ...admin,
  operationId: "adminListJobs",
  method: "get",
  path: "/jobs",
  summary: "Every session's jobs, newest first, in pages",
  request: { query: adminJobsQuerySchema },
  responses: {
    200: {
      description: "One page; `cursor` is null on the last.",
      content: {
        "application/json": {
          schema: z.object({
            jobs: z.array(AdminJob),
            cursor: z.string().nullable(),
          }),
        },
      },
    },
    ...errors({ 400: ["bad_request"], ...adminErrors }),
  },
});

const cancelAny = createRoute({
  ...admin,
  operationId: "adminCancelJob",
  method: "delete",
  path: "/jobs/{id}",
  summary: "Cancel any queued or running job",
  request: { params: JobIdParams },
  responses: {
    200: {
      description: "Cancelled.",
      content: { "application/json": { schema: AdminJob } },
    },
    ...errors({ ...adminErrors, 409: ["not_cancellable"] }),
  },
});

const slots = createRoute({
  ...admin,
  operationId: "adminSlots",
  method: "get",
  path: "/slots",
  summary: "The model slots and their utilisation",
  responses: {
    200: {
      description: "Live slots.",
      content: {
        "application/json": {
          schema: z.object({
            slots: z.array(z.object({
              id: z.string(),
              kind: z.enum(["simulated", "command", "cog"]),
              state: z.enum(["idle", "busy", "unhealthy"]),
              jobId: z.string().nullable(),
              since: z.iso.datetime(),
              utilisation: z.number().min(0).max(1),
            })),
            utilisation: z.number().min(0).max(1),
          }),
        },
      },
    },
    ...errors(adminErrors),
  },
});

const pauseRoute = (
  method: "get" | "post",
  path: "/pause" | "/resume",
  operationId: string,
  summary: string,
) =>
  createRoute({
    ...admin,
    operationId,
    method,
    path,
    summary,
    responses: {
      200: {
        description: "Whether intake is paused, and since when.",
        content: { "application/json": { schema: Pause } },
      },
      ...errors(adminErrors),
    },
  });

export function adminRoutes(deps: AdminDeps) {
  const { kv, clock, config } = deps;
  const noStore = async (c: Context, next: () => Promise<void>) => {
    await next();
    c.header("Cache-Control", "no-store");
  };
  const app = new OpenAPIHono();
  app.openAPIRegistry.registerComponent("securitySchemes", "adminToken", {
    type: "http",
    scheme: "bearer",
    description: "`ADMIN_TOKEN`.",
  });
  app.use("*", adminAuth(deps), noStore);
  return app
    .openapi(listJobs, async (c) => {
      const { status, limit, cursor } = c.req.valid("query");
      const page = await listAllJobs(kv, { status, limit, cursor }).catch(
        (e) => {
          if (e instanceof InvalidCursor) {
            throw badRequest("cursor: pass one a page returned.");
          }
          throw e;
        },
      );
      return c.json({
        jobs: await adminJobs(deps, page.jobs),
        cursor: page.cursor,
      }, 200);
    }, refuse({ query: badQuery }))
    .openapi(cancelAny, async (c) => {
      const { id } = c.req.valid("param");
      // The visitor's cancel path, for any session's job; an ended job is
      // left alone (deleting is its owner's choice).
      const result = await cancelJob(
        kv,
        id,
        clock.now(),
        config.retentionMs,
        config.maxWaitingPerClient,
      );
      if (result === null) throw notFound();
      if (result === "final") {
        throw notCancellable((await getJob(kv, id))?.status ?? "ended");
      }
      deps.log.info("job.cancelled", { job: id, by: "admin" });
      return c.json((await adminJobs(deps, [result]))[0], 200);
    }, refuse({ param: notFound }))
    .openapi(slots, async (c) => {
      const slots = await listSlots(kv, clock.now());
      return c.json({
        slots: slots.map((s) => ({
          id: s.id,
          kind: s.kind,
          state: s.state,
          jobId: s.jobId,
          since: new Date(s.since).toISOString(),
          utilisation: s.utilisation,
        })),
        utilisation: totalUtilisation(slots),
      }, 200);
    })
    .openapi(
      pauseRoute(
        "get",
        "/pause",
        "adminPauseState",
        "Whether intake is paused",
      ),
      async (c) => c.json(await pauseView(kv), 200),
    )
    .openapi(
      pauseRoute(
        "post",
        "/pause",
        "adminPause",
        "Pause intake: uploads get 503 `paused`; queued jobs still run",
      ),
      async (c) => {
        await pauseIntake(kv, clock.now());
        deps.log.info("intake.paused", {});
        return c.json(await pauseView(kv), 200);
      },
    )
    .openapi(
      pauseRoute("post", "/resume", "adminResume", "Resume intake"),
      async (c) => {
        await resumeIntake(kv);
        deps.log.info("intake.resumed", {});
        deps.ring();
        return c.json(await pauseView(kv), 200);
      },
    );
}
