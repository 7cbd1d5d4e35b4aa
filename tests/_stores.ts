/**
 * Both stores, for tests that must hold for any {@link Store}: the disk store
 * the service runs on, and the memory store that proves nothing outside the
 * store depends on paths.
 */
import { MemoryStore } from "../media/memory_store.ts";
import { DiskStore, type Store } from "../media/store.ts";

export interface TestStore extends AsyncDisposable {
  store: Store;
}

/** Makes a fresh, empty store of each kind, by name. */
export const STORES: Record<
  "disk" | "memory",
  (now?: () => number) => Promise<TestStore>
> = {
  async disk() {
    const dir = await Deno.makeTempDir({ prefix: "img2vid-store-" });
    return {
      store: await new DiskStore(dir).init(),
      [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
    };
  },
  memory(now?: () => number) {
    return Promise.resolve({
      store: new MemoryStore(now),
      [Symbol.asyncDispose]: () => Promise.resolve(),
    });
  },
};

/** Stores `bytes` as job `id`'s image, the way an upload does. */
export async function putImage(
  store: Store,
  id: string,
  bytes: Uint8Array,
): Promise<void> {
  const incoming = await store.receive();
  await incoming.write(bytes);
  await incoming.keep(id);
}

/** A stored file's bytes, read whole; closes it. */
export async function readStored(
  store: Store,
  id: string,
  kind: Parameters<Store["open"]>[1],
): Promise<Uint8Array | null> {
  const file = await store.open(id, kind);
  if (!file) return null;
  return new Uint8Array(await new Response(file.readable).arrayBuffer());
}
