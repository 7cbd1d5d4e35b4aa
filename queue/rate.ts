/**
 * Requests per session or per client address per minute (API.md
 * `UPLOADS_PER_MINUTE`, `UPLOADS_PER_MINUTE_PER_CLIENT`, and playbacks): a
 * fixed one-minute window counted in KV, so every web process shares the
 * count.
 */
import { keys } from "./keys.ts";

/** One counter: requests of `kind` by `who` (a session, or a client address). */
export interface RateWindow {
  kind: "upload" | "playback" | "client_upload";
  who: string;
  perMinute: number;
}

/**
 * Counts one request of `kind` for `who` (a session, or for `client_upload` a
 * client address). Returns null when allowed, or the milliseconds until the
 * window ends when the limit is reached.
 */
export async function takeSlot(
  kv: Deno.Kv,
  kind: RateWindow["kind"],
  who: string,
  now: number,
  perMinute: number,
): Promise<number | null> {
  return (await takeSlots(kv, [{ kind, who, perMinute }], now))?.waitMs ??
    null;
}

/**
 * Counts one request against every window at once, in one read and one
 * commit (an upload counts against its session and its address), or against
 * none when one is full. Returns null when allowed, or which window is full
 * and the milliseconds until it ends. Takes of the same last window (the
 * most shared one, e.g. the address) wait in line in this process.
 */
export function takeSlots(
  kv: Deno.Kv,
  windows: RateWindow[],
  now: number,
): Promise<{ index: number; waitMs: number } | null> {
  const minute = Math.floor(now / 60_000);
  const rateKeys = windows.map((w) => keys.rate(w.kind, w.who, minute));
  return serially(
    rateKeys.at(-1)!.join("\0"),
    () => take(kv, windows, rateKeys, now, minute),
  );
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

/** A window's count outlives its minute by this, then KV drops it. */
const EXPIRE_MS = 120_000;

async function take(
  kv: Deno.Kv,
  windows: RateWindow[],
  rateKeys: Deno.KvKey[],
  now: number,
  minute: number,
): Promise<{ index: number; waitMs: number } | null> {
  for (;;) {
    const entries = await kv.getMany<number[]>(rateKeys);
    const full = entries.findIndex((e, i) =>
      (e.value ?? 0) >= windows[i].perMinute
    );
    if (full >= 0) return { index: full, waitMs: (minute + 1) * 60_000 - now };
    const op = kv.atomic();
    entries.forEach((e, i) =>
      op.check(e).set(rateKeys[i], (e.value ?? 0) + 1, {
        expireIn: EXPIRE_MS,
      })
    );
    if ((await op.commit()).ok) return null;
  }
}
