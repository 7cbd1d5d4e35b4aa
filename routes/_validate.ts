/**
 * Request validation with zod through `@hono/zod-validator`, failing with the
 * contract's errors instead of the validator's default 400 body.
 */
import { zValidator } from "@hono/zod-validator";
import { z } from "zod";
import { JOB_ID } from "../queue/ids.ts";
import { forbidden, notFound } from "./errors.ts";

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
    sig: z.string().regex(/^[A-Za-z0-9_-]{43}$/),
  }),
  (result) => {
    if (!result.success) {
      throw forbidden("This video address is not valid.");
    }
  },
);
