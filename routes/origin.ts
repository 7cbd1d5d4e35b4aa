/**
 * Refuses cross-site state changes with the contract's 403 `forbidden_origin`.
 *
 * Not Hono's `csrf()`: it refuses a request that carries neither `Origin` nor
 * `Sec-Fetch-Site`, which is what `curl -F image=@photo.jpg` sends and the
 * contract accepts, and it does not look at raw `image/*` bodies at all.
 * Browsers send at least one of the two headers on every cross-site POST.
 */
import type { MiddlewareHandler } from "hono";
import { ApiError } from "./errors.ts";

export function sameOrigin(): MiddlewareHandler {
  return async function sameOrigin(c, next) {
    if (!/^(GET|HEAD|OPTIONS)$/.test(c.req.method)) {
      const site = c.req.header("sec-fetch-site");
      const origin = c.req.header("origin");
      const ok =
        (site === undefined || site === "same-origin" || site === "none") &&
        (origin === undefined || origin === new URL(c.req.url).origin);
      if (!ok) {
        throw new ApiError(
          403,
          "forbidden_origin",
          "This request came from another site; send it from this page.",
        );
      }
    }
    await next();
  };
}
