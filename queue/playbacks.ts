/**
 * Playback grants (routes/playback.ts): a record per playback with its key,
 * kept in KV so any web process can serve the segment, and taken exactly
 * once (the one-time segment address).
 */
import { keys } from "./keys.ts";

export interface Playback {
  jobId: string;
  session: string;
  key: Uint8Array<ArrayBuffer>;
  iv: Uint8Array<ArrayBuffer>;
  /** Serve the CENC copy (Clear Key EME) rather than the clear fragments. */
  cenc: boolean;
}

/** Stores a new grant under `id`, forgotten after `ttlMs`. */
export async function savePlayback(
  kv: Deno.Kv,
  id: string,
  playback: Playback,
  ttlMs: number,
): Promise<void> {
  await kv.set(keys.playback(id), playback, { expireIn: ttlMs });
}

/**
 * Takes grant `id` if it is `session`'s grant for job `jobId`: it is deleted
 * in the same commit that checks it, so a second take (a replay, a racing
 * fetch) gets null.
 */
export async function takePlayback(
  kv: Deno.Kv,
  id: string,
  session: string,
  jobId: string,
): Promise<Playback | null> {
  const entry = await kv.get<Playback>(keys.playback(id));
  const playback = entry.value;
  if (!playback || playback.session !== session || playback.jobId !== jobId) {
    return null;
  }
  const taken = await kv.atomic().check(entry).delete(keys.playback(id))
    .commit();
  return taken.ok ? playback : null;
}
