/**
 * Refuses cross-site state changes with the contract's 403 `forbidden_origin`.
 *
 * Not Hono's `csrf()`: it refuses a request that carries neither `Origin` nor
 * `Sec-Fetch-Site`, which is what `curl -F image=@photo.jpg` sends and the
 * contract accepts, and it does not look at raw `image/*` bodies at all.
 * Browsers send at least one of the two headers on every cross-site POST.
 */
import type { Context, MiddlewareHandler } from "hono";
import { ApiError } from "./errors.ts";

/**
 * The origin visitors use: the request's own, or behind `trustProxy`
 * reverse proxies the scheme and host they forwarded (`X-Forwarded-Proto`,
 * `X-Forwarded-Host`, the N-th entry from the right as for the address),
 * since a proxy that ends TLS reaches us over plain `http://`.
 */
export function publicOrigin(c: Context, trustProxy: number): string {
  const own = new URL(c.req.url);
  if (trustProxy <= 0) return own.origin;
  const forwarded = (name: string) => {
    const hops = (c.req.header(name) ?? "").split(",").map((s) => s.trim())
      .filter(Boolean);
    return hops.length ? hops[Math.max(0, hops.length - trustProxy)] : null;
  };
  const proto = forwarded("x-forwarded-proto");
  const host = forwarded("x-forwarded-host") ?? own.host;
  const scheme = proto === "https" || proto === "http" ? proto : null;
  return `${scheme ?? own.protocol.slice(0, -1)}://${host}`;
}

export function sameOrigin(trustProxy = 0): MiddlewareHandler {
  return async function sameOrigin(c, next) {
    if (!/^(GET|HEAD|OPTIONS)$/.test(c.req.method)) {
      const site = c.req.header("sec-fetch-site");
      const origin = c.req.header("origin");
      const ok =
        (site === undefined || site === "same-origin" || site === "none") &&
        (origin === undefined || origin === publicOrigin(c, trustProxy));
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
