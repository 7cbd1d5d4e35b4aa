/**
 * Requests per session per minute (API.md `UPLOADS_PER_MINUTE`, and
 * playbacks): a fixed one-minute window counted in KV, so every web process
 * shares the count.
 */
import { keys } from "./keys.ts";

/**
 * Counts one request of `kind` for `session`. Returns null when allowed, or
 * the milliseconds until the window ends when the limit is reached.
 */
export async function takeSlot(
  kv: Deno.Kv,
  kind: "upload" | "playback",
  session: string,
  now: number,
  perMinute: number,
): Promise<number | null> {
  const minute = Math.floor(now / 60_000);
  const key = keys.rate(kind, session, minute);
  for (;;) {
    const entry = await kv.get<number>(key);
    const used = entry.value ?? 0;
    if (used >= perMinute) return (minute + 1) * 60_000 - now;
    const res = await kv.atomic().check(entry)
      .set(key, used + 1, { expireIn: 120_000 })
      .commit();
    if (res.ok) return null;
  }
}
