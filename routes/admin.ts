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
import type { Context, MiddlewareHandler } from "hono";
import { Hono } from "hono";
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
import { adminJobsQuery, jobIdParam } from "./_validate.ts";
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

export function adminRoutes(deps: AdminDeps) {
  const { kv, clock, config } = deps;
  const noStore = async (c: Context, next: () => Promise<void>) => {
    await next();
    c.header("Cache-Control", "no-store");
  };
  return new Hono()
    .use("*", adminAuth(deps), noStore)
    .get("/jobs", adminJobsQuery, async (c) => {
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
      });
    })
    .delete("/jobs/:id", jobIdParam, async (c) => {
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
      return c.json((await adminJobs(deps, [result]))[0]);
    })
    .get("/slots", async (c) => {
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
      });
    })
    .get("/pause", async (c) => c.json(await pauseView(kv)))
    .post("/pause", async (c) => {
      await pauseIntake(kv, clock.now());
      deps.log.info("intake.paused", {});
      return c.json(await pauseView(kv));
    })
    .post("/resume", async (c) => {
      await resumeIntake(kv);
      deps.log.info("intake.resumed", {});
      deps.ring();
      return c.json(await pauseView(kv));
    });
}
