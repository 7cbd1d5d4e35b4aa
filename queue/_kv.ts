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

/** Tries of one KV call that found the file locked by another process. */
const BUSY_TRIES = 8;
/** The first wait before trying again; each further wait is one more of these. */
const BUSY_WAIT_MS = 25;

const isBusy = (e: unknown) =>
  e instanceof Error && /database is (locked|busy)/i.test(e.message);

async function retryBusy<T>(call: () => Promise<T>): Promise<T> {
  for (let i = 1;; i++) {
    try {
      return await call();
    } catch (e) {
      if (!isBusy(e) || i >= BUSY_TRIES) throw e;
      await new Promise((r) => setTimeout(r, BUSY_WAIT_MS * i));
    }
  }
}

/**
 * `kv` whose reads, writes and commits try again, after a short wall-time
 * wait, when SQLite reports the file locked: with several processes on one
 * KV file (a web and several workers, each writing leases and progress
 * several times a second) a writer sometimes finds another's lock, and
 * Deno KV reports that instead of waiting. A commit is tried again whole,
 * with its checks, so a retry never applies it twice. Lists and watches
 * are passed through.
 */
export function retryingWhenBusy(kv: Deno.Kv): Deno.Kv {
  const retried = new Set<PropertyKey>([
    "get",
    "getMany",
    "set",
    "delete",
    "enqueue",
  ]);
  return new Proxy(kv, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      if (retried.has(prop)) {
        return (...args: unknown[]) =>
          retryBusy(() => value.apply(target, args));
      }
      if (prop === "atomic") {
        return () => {
          const op = target.atomic();
          const commit = op.commit.bind(op);
          op.commit = () => retryBusy(commit);
          return op;
        };
      }
      return value.bind(target);
    },
  });
}
