/**
 * HEAD answered as GET's headers with no body, the body given back. Hono runs
 * the GET handler for a HEAD and drops its body without cancelling it, so a
 * streaming answer (an event stream, a file) would stay open for ever.
 */
import type { MiddlewareHandler } from "hono";

export function headersOnly(): MiddlewareHandler {
  return async function headersOnly(c, next) {
    await next();
    if (c.req.method !== "HEAD" || !c.res.body) return;
    await c.res.body.cancel();
    c.res = new Response(null, c.res);
  };
}
