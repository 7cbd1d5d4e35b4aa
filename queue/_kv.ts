/** KV helpers the queue modules share. */
import { GET_MANY_MAX } from "./keys.ts";

/**
 * `kv.getMany` for any number of keys: KV takes at most {@link GET_MANY_MAX}
 * per call (DESIGN.md, KV limits), so this reads them in batches, in order.
 */
export async function getAll<T>(
  kv: Deno.Kv,
  keys: readonly Deno.KvKey[],
): Promise<Deno.KvEntryMaybe<T>[]> {
  const out: Deno.KvEntryMaybe<T>[] = [];
  for (let i = 0; i < keys.length; i += GET_MANY_MAX) {
    out.push(
      ...await kv.getMany<T[]>(keys.slice(i, i + GET_MANY_MAX) as Deno.KvKey[]),
    );
  }
  return out;
}
