/**
 * One log line per request (`LOG_FORMAT`, `log.ts`): method, path, status,
 * milliseconds to the response's head (an event stream's head is sent at
 * once; its length is not the request's), and the job the request names, so
 * a job's requests line up with its transitions.
 *
 * The path only, never the query: `video.url`'s signature and a Cog
 * webhook's secret travel there. No client address either: the per-client
 * limits already act on it, the reverse proxy's own log has it, and without
 * it these lines hold nothing personal to keep or erase.
 */
import type { MiddlewareHandler } from "hono";
import type { Logger } from "../log.ts";
import { JOB_ID_SOURCE } from "../queue/ids.ts";

/** A job named in the path (`/api/jobs/{id}/…`, `/jobs/{id}`, `/media/{id}`, `/cog/{id}`). */
const IN_PATH = new RegExp(
  `/(?:jobs|media|cog)/(${JOB_ID_SOURCE})(?=/|$)`,
);
/** A job just made: its address in `Location` (202, or 303 for a form post). */
const IN_LOCATION = new RegExp(`/jobs/(${JOB_ID_SOURCE})$`);

export function accessLog(log: Logger): MiddlewareHandler {
  return async function accessLog(c, next) {
    const start = performance.now();
    try {
      await next();
    } finally {
      const path = c.req.path;
      const job = IN_PATH.exec(path)?.[1] ??
        IN_LOCATION.exec(c.res.headers.get("location") ?? "")?.[1];
      log.info("request", {
        method: c.req.method,
        path,
        status: c.res.status,
        ms: Math.round(performance.now() - start),
        job,
      });
    }
  };
}
