/**
 * The video, read-only (API.md, "The video"): only through a short-lived URL
 * signed for the job and its owner's session, never as a top-level page,
 * with byte ranges (RFC 9110 §14), `inline` and `no-store`.
 */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { AppDeps } from "./deps.ts";
import { fileRangeStream, parseRange } from "../media/range.ts";
import { getJob } from "../queue/jobs.ts";
import { openOrForbidden } from "./_access.ts";
import { BoundedMap } from "../shared/bounded_map.ts";
import { forbidden, notFound } from "./errors.ts";
import { type SessionEnv, SIGNATURE, verify } from "./session.ts";
import { errors, JobIdParams, refuse } from "./_openapi.ts";
import { videoClaim } from "./_views.ts";

/** Checked signatures and done videos' owners remembered: a player asks for several ranges. */
const SIGNATURES_KEPT = 1024;
const VIDEOS_KEPT = 256;

const videoHeaders = z.object({
  "Content-Disposition": z.literal("inline"),
  "Cache-Control": z.literal("no-store"),
  "Accept-Ranges": z.literal("bytes"),
});
const mp4 = {
  "video/mp4": { schema: z.string().openapi({ format: "binary" }) },
};

const video = createRoute({
  operationId: "getVideo",
  method: "get",
  path: "/{id}",
  tags: ["jobs"],
  summary: "A done job's video, through its short-lived `video.url`",
  description: "For the owner's session only, never as a top-level page " +
    "(`Sec-Fetch-Dest: document`); byte ranges per RFC 9110 §14. A fresh " +
    "`GET /api/jobs/{id}` hands out a fresh url.",
  request: {
    params: JobIdParams,
    query: z.object({
      exp: z.coerce.number().int().positive().describe(
        "Expiry, epoch milliseconds.",
      ),
      sig: z.string().regex(SIGNATURE),
    }),
    headers: z.object({
      range: z.string().optional().describe("`bytes=start-end` (one range)."),
    }),
  },
  responses: {
    200: {
      description: "The whole video (H.264 yuv420p MP4, faststart).",
      headers: videoHeaders,
      content: mp4,
    },
    206: {
      description: "The range asked for.",
      headers: videoHeaders.extend({ "Content-Range": z.string() }),
      content: mp4,
    },
    416: {
      description: "The range is outside the video (no body).",
      headers: z.object({ "Content-Range": z.string() }),
    },
    ...errors({ 403: ["forbidden"], 404: ["not_found"] }),
  },
});

export function mediaRoutes(
  deps: Pick<AppDeps, "kv" | "clock" | "key" | "store">,
) {
  const signatures = new BoundedMap<string, true>(SIGNATURES_KEPT);
  const videos = new BoundedMap<string, { session: string; bytes: number }>(
    VIDEOS_KEPT,
  );
  return new OpenAPIHono<SessionEnv>().openapi(
    video,
    async (c) => {
      if (c.req.header("sec-fetch-dest") === "document") {
        throw forbidden("This video plays on its page only.");
      }
      const { id } = c.req.valid("param");
      const { exp, sig } = c.req.valid("query");
      const session = c.get("session");
      if (exp <= deps.clock.now()) {
        throw forbidden("This video address has expired; reload the page.");
      }
      const claim = videoClaim(id, session, exp);
      if (!signatures.has(`${claim}:${sig}`)) {
        if (!await verify(deps.key, "video", claim, sig)) {
          throw forbidden("This video address is not yours.");
        }
        signatures.set(`${claim}:${sig}`, true);
      }
      let video = videos.get(id);
      if (!video) {
        const job = await getJob(deps.kv, id);
        // Signed for this session, so it was its job: deleted is 404.
        if (!job) throw notFound();
        if (job.status !== "done" || !job.video) {
          throw forbidden("This video is not available.");
        }
        video = { session: job.session, bytes: job.video.bytes };
        videos.set(id, video);
      }
      if (video.session !== session) {
        throw forbidden("This video is not available.");
      }
      // Deleted since it was looked up: 404 (API.md: then 404 everywhere).
      const file = await openOrForbidden(deps, id, "video").catch((e) => {
        videos.delete(id);
        throw e;
      });
      let handedOver = false;
      try {
        const size = video.bytes; // recorded when the video was put in place
        const headers: Record<string, string> = {
          "Content-Type": "video/mp4",
          "Content-Disposition": "inline",
          "Cache-Control": "no-store",
          "Accept-Ranges": "bytes",
        };
        const range = parseRange(c.req.header("range"), size);
        if (range.kind === "unsatisfiable") {
          return c.body(null, 416, {
            ...headers,
            "Content-Range": `bytes */${size}`,
          });
        }
        const [start, end] = range.kind === "partial"
          ? [range.start, range.end]
          : [0, size - 1];
        const status = range.kind === "partial" ? 206 : 200;
        headers["Content-Length"] = String(end - start + 1);
        if (status === 206) {
          headers["Content-Range"] = `bytes ${start}-${end}/${size}`;
        }
        if (c.req.method === "HEAD" || size === 0) {
          return c.body(
            null,
            status,
            headers,
          );
        }
        const body = await fileRangeStream(file, start, end, size);
        handedOver = true; // the stream closes the file
        return c.body(body, status, headers);
      } finally {
        if (!handedOver) file.close();
      }
    },
    refuse({
      param: notFound,
      query: () => forbidden("This video address is not valid."),
    }),
  );
}
