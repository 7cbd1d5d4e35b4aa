/**
 * Open event streams per client address (API.md `MAX_STREAMS_PER_CLIENT`),
 * shared by every web process on the KV store: each process writes its own
 * count per client under its own key with `expireIn`, renewed while streams
 * are open, so a process that dies takes its count with it; a client's total
 * is the sum of the live entries.
 */
import { keys } from "./keys.ts";

/** One process's open streams for one client, live until `until` (epoch ms). */
export interface StreamCount {
  count: number;
  until: number;
}

/**
 * Writes `process`'s count of open streams for `client`, live for `ttlMs`
 * from `now`; a count of 0 removes the entry.
 */
export async function putStreamCount(
  kv: Deno.Kv,
  client: string,
  process: string,
  count: number,
  now: number,
  ttlMs: number,
): Promise<void> {
  const key = keys.streams(client, process);
  if (count <= 0) await kv.delete(key);
  else await kv.set(key, { count, until: now + ttlMs }, { expireIn: ttlMs });
}

/**
 * Open streams of `client` in every process but `except`. Entries past their
 * `until` are skipped: KV removes expired keys lazily.
 */
export async function otherStreams(
  kv: Deno.Kv,
  client: string,
  except: string,
  now: number,
): Promise<number> {
  let total = 0;
  for await (
    const entry of kv.list<StreamCount>({ prefix: keys.streamsOf(client) })
  ) {
    if (entry.key[2] === except || entry.value.until < now) continue;
    total += entry.value.count;
  }
  return total;
}
