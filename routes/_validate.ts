/**
 * Request validation with zod through `@hono/zod-validator`, failing with the
 * contract's errors instead of the validator's default 400 body.
 */
import { zValidator } from "@hono/zod-validator";
import { z } from "zod";
import { JOB_ID } from "../queue/ids.ts";
import { badRequest, forbidden, notFound } from "./errors.ts";
import { RANDOM_ID, SIGNATURE } from "./session.ts";

/** A job id as `newJobId` makes them; anything else cannot exist: 404. */
export const jobIdParam = zValidator(
  "param",
  z.object({ id: z.string().regex(JOB_ID) }),
  (result) => {
    if (!result.success) throw notFound();
  },
);

/** The signed video address's query; anything malformed is refused: 403. */
export const videoQuery = zValidator(
  "query",
  z.object({
    exp: z.coerce.number().int().positive(),
    sig: z.string().regex(SIGNATURE),
  }),
  (result) => {
    if (!result.success) {
      throw forbidden("This video address is not valid.");
    }
  },
);

/** A playback segment's one-time signed query; anything malformed: 403. */
export const segmentQuery = zValidator(
  "query",
  z.object({
    p: z.string().regex(RANDOM_ID),
    exp: z.coerce.number().int().positive(),
    sig: z.string().regex(SIGNATURE),
  }),
  (result) => {
    if (!result.success) throw forbidden("This segment address is not valid.");
  },
);

/** The job statuses, for filters. */
export const jobStatus = z.enum([
  "queued",
  "processing",
  "done",
  "failed",
  "cancelled",
]);

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
  cursor: z.string().regex(/^[A-Za-z0-9_=+/-]{1,1024}$/).optional(),
});

export const adminJobsQuery = zValidator(
  "query",
  adminJobsQuerySchema,
  (result) => {
    if (!result.success) {
      throw badRequest(
        `Query: status one of ${
          jobStatus.options.join(", ")
        }; limit 1-${ADMIN_JOBS_MAX}; cursor as a page returned it.`,
      );
    }
  },
);
