/**
 * The counters behind `/metrics` (Deno.KvU64 sums in KV, so every process
 * adds to the same ones) and the store's health probe.
 */
import { keys } from "./keys.ts";

/** The counters, by their KV names. */
export const STATS = [
  "jobs_done",
  "jobs_failed",
  "jobs_cancelled",
  "model_busy_ms",
  "upload_bytes_refused",
] as const;
export type StatName = typeof STATS[number];

/** Every counter's current value (0 when never counted). */
export async function readStats(
  kv: Deno.Kv,
): Promise<Record<StatName, number>> {
  const entries = await kv.getMany<Deno.KvU64[]>(STATS.map(keys.stat));
  return Object.fromEntries(
    STATS.map((name, i) => [name, Number(entries[i].value?.value ?? 0n)]),
  ) as Record<StatName, number>;
}

/** Adds a refused upload's bytes to its counter. */
export async function countRefusedBytes(
  kv: Deno.Kv,
  bytes: number,
): Promise<void> {
  await kv.atomic().sum(keys.stat("upload_bytes_refused"), BigInt(bytes))
    .commit();
}

/** Resolves when the KV store answers a read; throws when it does not. */
export async function pingStore(kv: Deno.Kv): Promise<void> {
  await kv.get(keys.depth());
}
