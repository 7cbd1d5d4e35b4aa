import assert from "node:assert/strict";
import { loadConfig } from "../config.ts";
import { MemoryStore } from "../media/memory_store.ts";
import { realClock } from "../queue/clock.ts";
import { QueueView } from "../queue/view.ts";
import { fixture } from "../tests/_server.ts";
import { acceptUpload } from "./_upload.ts";
import { UploadsInFlight } from "./limits.ts";

/**
 * A KV whose job-creating commits (the ones that ring the queue) fail, as on
 * a dropped connection or a locked file; other commits (the rate limit) work.
 */
function failingJobCommits(kv: Deno.Kv): Deno.Kv {
  return new Proxy(kv, {
    get(target, name) {
      if (name === "atomic") {
        return () => {
          const op = target.atomic();
          let ringing = false;
          const proxy: Deno.AtomicOperation = new Proxy(op, {
            get(o, q) {
              if (q === "enqueue") ringing = true;
              if (q === "commit") {
                return ringing
                  ? () => Promise.reject(new Error("KV is down"))
                  : () => o.commit();
              }
              const v = Reflect.get(o, q);
              return typeof v === "function"
                ? (...args: unknown[]) => (v.apply(o, args), proxy)
                : v;
            },
          });
          return proxy;
        };
      }
      const v = Reflect.get(target, name);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

Deno.test("an upload whose job cannot be committed leaves no image behind", async () => {
  using kv = await Deno.openKv(":memory:");
  const store = new MemoryStore();
  const broken = failingJobCommits(kv);
  const config = loadConfig({});
  const request = new Request("http://img2vid.test/api/jobs", {
    method: "POST",
    headers: { "content-type": "image/png" },
    body: await fixture("rgb.png"),
  });
  await assert.rejects(
    acceptUpload(
      {
        kv: broken,
        clock: realClock,
        store,
        config,
        queue: new QueueView(broken),
        draining: () => false,
        inFlight: new UploadsInFlight(config),
      },
      request,
      "session",
      "192.0.2.1",
    ),
    /KV is down/,
  );
  assert.deepEqual(await Array.fromAsync(store.entries()), []);
});
