/**
 * The app in process: `createApp` built by `startService` from a
 * `Deno.openKv(":memory:")`, a temp `DATA_DIR`, the fake encoder and, where a
 * test wants, a fake clock. Requests go straight to `app.fetch`, no socket:
 * for the routes' errors and ownership. What needs a process of its own
 * (crash, signals, roles, the browser) uses `_server.ts`.
 */
import { loadConfig } from "../config.ts";
import { fallbackLogger, type Logger } from "../log.ts";
import type { Store } from "../media/store.ts";
import type { Clock } from "../queue/clock.ts";
import { type Service, startService } from "../service.ts";
import { FakeClock, FakeEncoder } from "./_fakes.ts";
import { Client } from "./_server.ts";

export interface TestApp extends AsyncDisposable {
  service: Service;
  dataDir: string;
  encoder: FakeEncoder;
  /**
   * A new client (a new session) of this app; with `peer`, its requests come
   * from that TCP peer address (as Deno.serve's `remoteAddr`), else from none.
   */
  client(peer?: string): Client;
}

/** The origin the in-process requests claim. */
export const APP_ORIGIN = "http://img2vid.test";

export async function startApp(
  env: Record<string, string> = {},
  opts: {
    clock?: Clock;
    encoder?: FakeEncoder;
    store?: Store;
    /** Where the log goes; errors only, to stderr, unless a test captures it. */
    log?: Logger;
  } = {},
): Promise<TestApp> {
  const dataDir = await Deno.makeTempDir({ prefix: "img2vid-app-" });
  const encoder = opts.encoder ?? new FakeEncoder();
  const service = await startService(
    loadConfig({ DATA_DIR: dataDir, MODEL_DURATION_MS: "1000", ...env }),
    {
      kv: await Deno.openKv(":memory:"),
      clock: opts.clock,
      encoder,
      store: opts.store,
      log: opts.log ?? fallbackLogger,
    },
  );
  const app = service.app!;
  return {
    service,
    dataDir,
    encoder,
    client: (peer?: string) =>
      new Client(APP_ORIGIN, async (req) =>
        await app.fetch(
          req,
          peer
            ? { remoteAddr: { hostname: peer, port: 0, transport: "tcp" } }
            : undefined,
        )),
    async [Symbol.asyncDispose]() {
      await service.close();
      await Deno.remove(dataDir, { recursive: true });
    },
  };
}

/**
 * Moves `clock` on, one wake-up at a time, until job `id` has ended; returns
 * the ended job. Waits on events only: the next sleep on the fake clock, or
 * the job's own event stream saying it ended (after which nothing may sleep
 * again), so it neither spins nor hangs; a job that fails makes the caller's
 * assertion fail.
 */
export async function runToEnd(
  client: Client,
  clock: FakeClock,
  id: string,
): Promise<{ status: string; error: { code: string } | null }> {
  const final = new Set(["done", "failed", "cancelled"]);
  const ended = client.events(id, (j) => final.has(j.status)).then(() =>
    "ended" as const
  );
  for (;;) {
    const next = await Promise.race([
      ended,
      clock.untilSleeping(1).then(() => "sleeping" as const),
    ]);
    if (next === "ended") break;
    clock.wakeNext();
  }
  const { body } = await client.json<
    { status: string; error: { code: string } | null }
  >(`/api/jobs/${id}`);
  return body;
}
