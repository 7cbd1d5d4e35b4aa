/**
 * Sessions, not accounts (DESIGN.md): an HttpOnly, SameSite=Lax cookie holding
 * a random id and its HMAC. A tampered or unknown cookie is a new session.
 */
import type { MiddlewareHandler } from "hono";
import { getCookie, setCookie } from "hono/cookie";
import { decodeBase64Url, encodeBase64Url } from "../shared/base64url.ts";
import { BoundedMap } from "../shared/bounded_map.ts";
import { publicOrigin } from "./origin.ts";

export const SESSION_COOKIE = "img2vid_session";

/** `session` from {@link session}; `client` from `clientOf` (client_address.ts). */
export type SessionEnv = { Variables: { session: string; client: string } };

/** A key for HMAC-SHA256 from raw secret bytes. */
export function importSecret(raw: Uint8Array<ArrayBuffer>): Promise<CryptoKey> {
  return crypto.subtle.importKey(
    "raw",
    raw,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign", "verify"],
  );
}

/** A random id (sessions, playbacks): 128 bits, base64url. */
export const randomId = (): string =>
  encodeBase64Url(crypto.getRandomValues(new Uint8Array(16)));
/** What {@link randomId} makes: 22 base64url characters. */
export const RANDOM_ID = /^[A-Za-z0-9_-]{22}$/;
/** What {@link sign} makes: an HMAC-SHA256 in 43 base64url characters. */
export const SIGNATURE = /^[A-Za-z0-9_-]{43}$/;

/**
 * What a signature covers: its parts joined with ":" (ids, sessions and
 * times never contain one), e.g. `claim(jobId, session, exp)`.
 */
export const claim = (...parts: (string | number)[]): string => parts.join(":");

/** `base64url(HMAC(key, purpose + ":" + value))`. */
export async function sign(
  key: CryptoKey,
  purpose: string,
  value: string,
): Promise<string> {
  const mac = await crypto.subtle.sign(
    "HMAC",
    key,
    new TextEncoder().encode(`${purpose}:${value}`),
  );
  return encodeBase64Url(new Uint8Array(mac));
}

/** Checks a signature from {@link sign}; WebCrypto compares in constant time. */
export function verify(
  key: CryptoKey,
  purpose: string,
  value: string,
  signature: string,
): Promise<boolean> {
  const mac = decodeBase64Url(signature);
  if (!mac || mac.length !== 32) return Promise.resolve(false);
  return crypto.subtle.verify(
    "HMAC",
    key,
    mac,
    new TextEncoder().encode(`${purpose}:${value}`),
  );
}

/** Cookies already verified, so a page's many requests cost one HMAC. */
const VERIFIED_MAX = 1024;

/**
 * Reads or issues the session; handlers read it as `c.get("session")`. The
 * cookie is `Secure` when visitors use https (behind `trustProxy` proxies:
 * as they forwarded it).
 */
export function session(
  key: CryptoKey,
  trustProxy = 0,
): MiddlewareHandler<SessionEnv> {
  const verified = new BoundedMap<string, string>(VERIFIED_MAX); // cookie → session id
  return async function session(c, next) {
    const cookie = getCookie(c, SESSION_COOKIE) ?? "";
    const [id, mac] = cookie.split(".");
    if (verified.has(cookie)) {
      c.set("session", verified.get(cookie)!);
    } else if (
      id && mac && RANDOM_ID.test(id) &&
      await verify(key, "session", id, mac)
    ) {
      verified.set(cookie, id);
      c.set("session", id);
    } else {
      const fresh = randomId();
      c.set("session", fresh);
      setCookie(
        c,
        SESSION_COOKIE,
        `${fresh}.${await sign(key, "session", fresh)}`,
        {
          httpOnly: true,
          sameSite: "Lax",
          path: "/",
          maxAge: 400 * 24 * 3600, // the longest browsers keep (RFC 6265bis §5.5)
          secure: publicOrigin(c, trustProxy).startsWith("https:"),
        },
      );
    }
    await next();
  };
}
