/**
 * What the routes are described with in `/openapi.json` (API.md
 * "Operations"): the zod schemas that the routes also validate with, the
 * contract's error body per status with its codes, and the hooks that turn a
 * failed validation into the contract's error instead of zod's 400.
 *
 * Each route file defines its routes with `createRoute` and registers them
 * with `OpenAPIHono#openapi`, so a route and its description are one object:
 * the document cannot drift from the code.
 */
import { z } from "@hono/zod-openapi";
import { JOB_ID } from "../queue/ids.ts";
import type { ApiJob } from "../shared/api.ts";
import { IMAGE_TYPES } from "../shared/api.ts";
import { type ApiError, badRequest } from "./errors.ts";

/** A job id in a path; anything else cannot name a job (the hook answers 404). */
export const JobIdParams = z.object({
  id: z.string().regex(JOB_ID).openapi({
    param: { name: "id", in: "path" },
    description: "A job id as `POST /api/jobs` returned it.",
    example: "01KBN8Y0Z3Q4R5S6T7V8W9X0YZ",
  }),
});

const dateTime = z.iso.datetime();

/** Why a job failed, or an error's body inside `{"error": …}`. */
const JobError = z.object({ code: z.string(), message: z.string() });

/** A Job (API.md `GET /api/jobs/{id}`). */
export const Job = z.object({
  id: z.string().describe("Opaque and unguessable."),
  status: z.enum(["queued", "processing", "done", "failed", "cancelled"]),
  position: z.int().min(1).nullable().describe(
    "Queued only: 1 = the next to start (fair order, may grow).",
  ),
  progress: z.number().min(0).max(100).describe("100 only when done."),
  etaSeconds: z.int().min(0).nullable().describe(
    "Queued or processing: seconds until done, an estimate.",
  ),
  createdAt: dateTime,
  startedAt: dateTime.nullable(),
  finishedAt: dateTime.nullable(),
  image: z.object({
    type: z.string().openapi({ enum: [...IMAGE_TYPES] }),
    width: z.int().min(1),
    height: z.int().min(1),
    bytes: z.int().min(1),
  }).describe("As displayed: EXIF orientation applied."),
  video: z.object({
    url: z.string().describe(
      "Short-lived, for this session only; relative to the site.",
    ),
    type: z.literal("video/mp4"),
    expiresAt: dateTime,
  }).nullable().describe("Done only."),
  error: JobError.nullable().describe("Failed only."),
}).openapi("Job");

/** The compiler checks that the schema describes exactly what the server builds. */
type Same<A, B> = [A] extends [B] ? [B] extends [A] ? true : false : false;
const jobMatchesApiJob: Same<z.infer<typeof Job>, ApiJob> = true;
void jobMatchesApiJob;

/** Every error code the contract names, with when it happens. */
const CODES = {
  bad_request: "the request is not what the route takes",
  forbidden_origin:
    "a cross-site request (Origin / Sec-Fetch-Site not same-origin)",
  forbidden: "this address is not valid, not yours, used or expired",
  not_found: "no such job (or not this session's)",
  upload_timeout: "no byte of the body for `UPLOAD_IDLE_SECONDS`",
  not_cancellable: "the job has already ended",
  not_playable: "the job has no video yet",
  not_retryable:
    "not a failed or cancelled job with its image kept, or tried again already",
  unauthorized: "the operators' API without the right bearer token",
  too_large: "the body is over `MAX_UPLOAD_BYTES` (refused while streaming)",
  unsupported_type: "the bytes are not PNG, JPEG or WebP",
  invalid_image:
    "truncated or corrupt, zero pixels, or more pixels than the model accepts",
  queue_full: "`MAX_QUEUE` jobs wait already",
  rate_limited: "too many requests from this session or client address",
  too_many_waiting: "this session or client address has too many jobs waiting",
  busy: "too many uploads in flight",
  paused: "intake paused by the operator",
  unavailable: "the server is restarting",
  insufficient_storage: "`DATA_DIR` holds `DATA_MAX_BYTES` already",
  internal: "something went wrong on the server's side",
} as const;

export type ErrorCode = keyof typeof CODES;
type ErrorStatus = ApiError["status"] | 500;

/** The codes answered with a `Retry-After` header (seconds). */
const RETRY_AFTER = new Set<ErrorCode>([
  "queue_full",
  "rate_limited",
  "too_many_waiting",
  "busy",
  "paused",
  "unavailable",
  "insufficient_storage",
]);

/** `{"error": {"code", "message"}}` with the codes this status may carry. */
export const errorBody = (codes: readonly [ErrorCode, ...ErrorCode[]]) =>
  z.object({
    error: z.object({
      code: z.enum(codes),
      message: z.string().describe("A human sentence."),
    }),
  });

/**
 * The error responses of a route, by status, each with its codes; `500
 * internal` is added to every route.
 *
 * @example
 * errors({ 404: ["not_found"], 409: ["not_retryable"] })
 */
export function errors(
  byStatus: Partial<Record<ErrorStatus, readonly [ErrorCode, ...ErrorCode[]]>>,
) {
  const all = { ...byStatus, 500: ["internal"] } as Record<
    string,
    readonly [ErrorCode, ...ErrorCode[]]
  >;
  return Object.fromEntries(
    Object.entries(all).map(([status, codes]) => [status, {
      description: codes.map((code) => `\`${code}\`: ${CODES[code]}`).join(
        "; ",
      ),
      ...(codes.some((code) => RETRY_AFTER.has(code))
        ? {
          headers: z.object({
            "Retry-After": z.string().regex(/^\d+$/).describe(
              "Seconds to wait before trying again.",
            ),
          }),
        }
        : {}),
      content: { "application/json": { schema: errorBody(codes) } },
    }]),
  );
}

/**
 * A validation hook: a failed check of `param` or `query` throws the error
 * the contract names for it (a bad job id names no job: 404; a bad signed
 * address is refused: 403) instead of the validator's own 400. A bad job id
 * wins whatever else is wrong, as when the id was checked first.
 */
export function refuse(
  byTarget: Partial<Record<"param" | "query" | "header", () => ApiError>>,
): (
  result: { success: boolean; target: string },
  c: { req: { param(name: string): string | undefined } },
) => undefined {
  return (result, c) => {
    if (result.success) return;
    const id = c.req.param("id");
    if (byTarget.param && id !== undefined && !JOB_ID.test(id)) {
      throw byTarget.param();
    }
    const error = byTarget[result.target as keyof typeof byTarget];
    if (error) throw error();
    throw badRequest(`The request's ${result.target} is not valid.`);
  };
}

/**
 * A zod schema as a plain JSON Schema for a request body that the route reads
 * itself (a streamed upload, a lenient JSON body): `@hono/zod-openapi` adds a
 * body validator only for zod schemas, and that validator would buffer the
 * body (DESIGN.md: `parseBody` buffers) or refuse what the route accepts.
 */
export function describedOnly(schema: z.ZodType): Record<string, unknown> {
  const { $schema: _, ...json } = z.toJSONSchema(schema, {
    target: "draft-2020-12",
    io: "input",
  });
  return json;
}
