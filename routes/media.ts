/**
 * The video, read-only (API.md, "The video"): only through a short-lived URL
 * signed for the job and its owner's session, never as a top-level page,
 * with byte ranges (RFC 9110 §14), `inline` and `no-store`.
 */
import { Hono } from "hono";
import type { AppDeps } from "../app.ts";
import { fileRangeStream, parseRange } from "../media/range.ts";
import { getJob } from "../queue/jobs.ts";
import { ApiError } from "./errors.ts";
import { type SessionEnv, verify } from "./session.ts";
import { videoClaim } from "./_views.ts";
import { jobIdParam, videoQuery } from "./_validate.ts";

const forbidden = (message: string) => new ApiError(403, "forbidden", message);

export function mediaRoutes(deps: AppDeps) {
  return new Hono<SessionEnv>().get(
    "/:id",
    jobIdParam,
    videoQuery,
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
      if (!await verify(deps.key, "video", videoClaim(id, session, exp), sig)) {
        throw forbidden("This video address is not yours.");
      }
      const job = await getJob(deps.kv, id);
      if (!job || job.session !== session || job.status !== "done") {
        throw forbidden("This video is not available.");
      }
      const path = deps.store.videoPath(id);
      let size: number;
      try {
        size = (await Deno.stat(path)).size;
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) {
          throw forbidden("This video is not available.");
        }
        throw e;
      }
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
      headers["Content-Length"] = String(end - start + 1);
      if (range.kind === "partial") {
        headers["Content-Range"] = `bytes ${start}-${end}/${size}`;
      }
      return c.body(
        fileRangeStream(path, start, end),
        range.kind === "partial" ? 206 : 200,
        headers,
      );
    },
  );
}
