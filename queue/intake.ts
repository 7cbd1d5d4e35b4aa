/**
 * The operators' pause (API.md, "Operators"): one KV key that every web
 * process reads before taking an upload, so a pause holds across processes.
 * Queued jobs still run: the workers never read it.
 */
import { keys } from "./keys.ts";

/** The pause as stored: since when intake is stopped (epoch ms). */
export interface Pause {
  since: number;
}

/** The pause in force, or null while uploads are taken. */
export async function getPause(kv: Deno.Kv): Promise<Pause | null> {
  return (await kv.get<Pause>(keys.paused())).value;
}

/**
 * Stops intake from `now` (a pause already in force keeps its start), and
 * returns the pause in force.
 */
export async function pauseIntake(kv: Deno.Kv, now: number): Promise<Pause> {
  const pause = { since: now } satisfies Pause;
  const res = await kv.atomic().check({
    key: keys.paused(),
    versionstamp: null,
  })
    .set(keys.paused(), pause).commit();
  return res.ok ? pause : (await getPause(kv)) ?? pause;
}

/** Takes uploads again. */
export async function resumeIntake(kv: Deno.Kv): Promise<void> {
  await kv.delete(keys.paused());
}
