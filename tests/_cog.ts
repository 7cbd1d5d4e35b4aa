/**
 * The Cog adapter's test rig: the app in process (its webhook route on a
 * socket, so fake Cog servers reach it), fake Cog servers as slots, and
 * adapters over the app's KV that stand for worker processes.
 */
import { keys } from "../queue/keys.ts";
import type { JobRecord } from "../queue/jobs.ts";
import { newJobId } from "../queue/ids.ts";
import type { ModelRun } from "../queue/models/adapter.ts";
import { COG_TIMINGS, CogAdapter } from "../queue/models/cog.ts";
import { cogWebhookUrl } from "../routes/webhooks.ts";
import { importSecret } from "../routes/session.ts";
import { startApp, type TestApp } from "./_app.ts";
import { FakeCog, type FakeCogOptions } from "./fake_cog.ts";

export const IMAGE = new URL("./fixtures/rgb.png", import.meta.url).pathname;
/** A failure bound for waits, never a timing assertion. */
export const BOUND_MS = 20_000;

export interface Harness extends AsyncDisposable {
  app: TestApp;
  kv: Deno.Kv;
  base: string;
  key: CryptoKey;
  fakes: FakeCog[];
  adapter(timings?: Partial<typeof COG_TIMINGS>): CogAdapter;
  /** A run of a new job (or job `id`), with its progress and abort. */
  run(id?: string): TestRun;
}

export interface TestRun extends ModelRun {
  progressSeen: number[];
  abort(reason?: unknown): void;
  /** Resolves once `percent` was reported. */
  untilProgress(percent: number): Promise<void>;
}

export async function cogHarness(
  slots = 1,
  fakeOpts: FakeCogOptions = {},
): Promise<Harness> {
  const app = await startApp();
  const kv = app.service.kv;
  const raw = (await kv.get<Uint8Array<ArrayBuffer>>(keys.secret())).value!;
  const key = await importSecret(raw);
  // The app on a socket, as Cog servers reach it.
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req, info) => app.service.app!.fetch(req, { remoteAddr: info.remoteAddr }),
  );
  const base = `http://127.0.0.1:${server.addr.port}`;
  const fakes = Array.from({ length: slots }, () => new FakeCog(fakeOpts));
  const outDir = await Deno.makeTempDir({ prefix: "img2vid-cog-" });
  return {
    app,
    kv,
    base,
    key,
    fakes,
    adapter: (timings) =>
      new CogAdapter({
        kv,
        urls: fakes.map((f) => f.url),
        input: "input_image",
        inputs: { frames_per_second: 6, video_length: "14_frames_with_svd" },
        webhookUrl: (id) => cogWebhookUrl(key, base, id),
        timings: { cancelWaitMs: BOUND_MS, ...timings },
      }),
    run(id = newJobId(Date.now())) {
      const ctl = new AbortController();
      const progressSeen: number[] = [];
      let waiters: (() => void)[] = [];
      return {
        job: jobRecord(id),
        input: IMAGE,
        output: `${outDir}/${id}.mp4`,
        clip: {
          video: `${outDir}/${id}.clip.mp4`,
          fragments: `${outDir}/${id}.frag.mp4`,
        },
        wait: () => Promise.reject(new Error("Cog keeps no time of ours")),
        signal: ctl.signal,
        progressSeen,
        progress(p: number) {
          progressSeen.push(p);
          for (const w of waiters.splice(0)) w();
        },
        abort: (reason?: unknown) => ctl.abort(reason),
        async untilProgress(p: number) {
          while (!progressSeen.includes(p)) {
            await new Promise<void>((r) => waiters.push(r));
          }
          waiters = [];
        },
      };
    },
    async [Symbol.asyncDispose]() {
      for (const f of fakes) await f[Symbol.asyncDispose]();
      await server.shutdown();
      await app[Symbol.asyncDispose]();
      await Deno.remove(outDir, { recursive: true });
    },
  };
}

function jobRecord(id: string): JobRecord {
  return {
    id,
    session: "s",
    client: "c",
    status: "processing",
    createdAt: Date.now(),
    startedAt: Date.now(),
    finishedAt: null,
    image: {
      type: "image/png",
      width: 64,
      height: 48,
      bytes: 100,
      orientation: 1,
    },
    video: null,
    error: null,
    attempts: 1,
  };
}
