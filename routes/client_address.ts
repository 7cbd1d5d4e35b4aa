/**
 * Who the client is, for the per-client limits and the fair order (API.md,
 * `TRUST_PROXY`): the TCP peer, or behind `N` reverse proxies the N-th
 * address from the right of `X-Forwarded-For` (each proxy appends the
 * address it was reached from, so the right-most N entries are trustworthy
 * and anything to their left is whatever the client wrote). IPv6 addresses
 * are grouped by /64, the block one subscriber usually gets, so that a
 * client cannot dodge a limit by walking its own prefix.
 */
import type { MiddlewareHandler } from "hono";

/** Handlers read the client's address as `c.get("client")`. */
export type ClientEnv = { Variables: { client: string } };

/**
 * Sets `c.var.client` for every request. Deno.serve hands Hono its
 * `ServeHandlerInfo` as `c.env` (the TCP peer in `remoteAddr`); a request
 * made in process (`app.fetch(req)`) has none and is client "unknown".
 */
export function clientOf(trustProxy: number): MiddlewareHandler<ClientEnv> {
  return async function client(c, next) {
    const info = c.env as
      | { remoteAddr?: { hostname?: string } }
      | undefined;
    c.set(
      "client",
      clientAddress(
        info?.remoteAddr?.hostname,
        c.req.header("x-forwarded-for"),
        trustProxy,
      ),
    );
    await next();
  };
}

/**
 * The client's address key: `a.b.c.d` or `xxxx:xxxx:xxxx:xxxx::/64`.
 *
 * @example clientAddress("10.0.0.2", "203.0.113.7, 10.0.0.1", 1) // "10.0.0.1"
 * @example clientAddress("2001:db8::1", null, 0) // "2001:db8:0:0::/64"
 */
export function clientAddress(
  peer: string | undefined,
  forwardedFor: string | null | undefined,
  trustProxy: number,
): string {
  const fallback = normalizeAddress(peer ?? "") ?? "unknown";
  if (trustProxy <= 0 || !forwardedFor) return fallback;
  const hops = forwardedFor.split(",").map((s) => s.trim()).filter(Boolean);
  if (hops.length === 0) return fallback;
  // Fewer entries than proxies: the first proxy saw no header of its own; its
  // own entry is the left-most one.
  const chosen = hops[Math.max(0, hops.length - trustProxy)];
  return normalizeAddress(chosen) ?? fallback;
}

/** An IPv4 address, or an IPv6 address as its /64; null when it is neither. */
export function normalizeAddress(text: string): string | null {
  let s = text.trim();
  // "[v6]:port" and "v4:port" as some proxies write them.
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(s);
  if (bracketed) s = bracketed[1];
  else if (/^\d{1,3}(\.\d{1,3}){3}:\d+$/.test(s)) {
    s = s.slice(0, s.indexOf(":"));
  }
  s = s.replace(/%.*$/, ""); // a zone id
  const v4 = ipv4(s);
  if (v4) return v4;
  const groups = ipv6(s);
  if (!groups) return null;
  // An IPv4 address mapped into IPv6 (::ffff:a.b.c.d) is that IPv4 client.
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return [groups[6] >> 8, groups[6] & 255, groups[7] >> 8, groups[7] & 255]
      .join(".");
  }
  return `${groups.slice(0, 4).map((g) => g.toString(16)).join(":")}::/64`;
}

function ipv4(s: string): string | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return null;
  const parts = m.slice(1).map(Number);
  return parts.every((p) => p <= 255) ? parts.join(".") : null;
}

/** The eight 16-bit groups of an IPv6 address (RFC 4291 §2.2 text forms). */
function ipv6(s: string): number[] | null {
  if (!s.includes(":")) return null;
  let tail: number[] = [];
  const dotted = /^(.*:)(\d{1,3}(?:\.\d{1,3}){3})$/.exec(s);
  if (dotted) {
    const v4 = ipv4(dotted[2]);
    if (!v4) return null;
    const b = v4.split(".").map(Number);
    tail = [(b[0] << 8) | b[1], (b[2] << 8) | b[3]];
    s = dotted[1].endsWith("::") ? dotted[1] : dotted[1].slice(0, -1);
  }
  const halves = s.split("::");
  if (halves.length > 2) return null;
  const parse = (part: string) =>
    part === ""
      ? []
      : part.split(":").map((g) =>
        /^[0-9a-fA-F]{1,4}$/.test(g) ? parseInt(g, 16) : NaN
      );
  const head = parse(halves[0]);
  const rest = halves.length === 2 ? parse(halves[1]) : [];
  const given = head.length + rest.length + tail.length;
  if ([...head, ...rest].some(Number.isNaN)) return null;
  if (halves.length === 1 && given !== 8) return null;
  if (halves.length === 2 && given > 7) return null;
  const zeros = new Array(8 - given).fill(0);
  return [...head, ...zeros, ...rest, ...tail];
}
