/**
 * Requests per session or per client address per minute (API.md
 * `UPLOADS_PER_MINUTE`, `UPLOADS_PER_MINUTE_PER_CLIENT`, and playbacks): a
 * fixed one-minute window counted in KV, so every web process shares the
 * count.
 */
import { keys } from "./keys.ts";

/**
 * Counts one request of `kind` for `who` (a session, or for `client_upload` a
 * client address). Returns null when allowed, or the milliseconds until the
 * window ends when the limit is reached.
 */
export function takeSlot(
  kv: Deno.Kv,
  kind: "upload" | "playback" | "client_upload",
  who: string,
  now: number,
  perMinute: number,
): Promise<number | null> {
  const minute = Math.floor(now / 60_000);
  const key = keys.rate(kind, who, minute);
  return serially(key.join("\0"), () => take(kv, key, now, minute, perMinute));
}

/**
 * This process's takes of one counter, one after another: concurrent
 * check-and-set commits on one key fail all but one and retry, so N at once
 * (one address's burst) cost N² commits; in line they cost N.
 */
const lines = new Map<string, Promise<unknown>>();

function serially<T>(id: string, fn: () => Promise<T>): Promise<T> {
  const result = (lines.get(id) ?? Promise.resolve()).then(fn, fn);
  const tail = result.catch(() => {});
  lines.set(id, tail);
  tail.then(() => {
    if (lines.get(id) === tail) lines.delete(id);
  });
  return result;
}

async function take(
  kv: Deno.Kv,
  key: ReturnType<typeof keys.rate>,
  now: number,
  minute: number,
  perMinute: number,
): Promise<number | null> {
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
