import assert from "node:assert/strict";
import { queuedJob } from "../tests/_fakes.ts";
import { JobHub, type JobSnapshot } from "./hub.ts";
import { createJob } from "./jobs.ts";
import { keys } from "./keys.ts";

/** Resolves with the first snapshot that satisfies `ok`. */
function next(hub: JobHub, id: string, ok: (s: JobSnapshot) => boolean) {
  return new Promise<{ snapshot: JobSnapshot; stop: () => void }>((resolve) => {
    const stop = hub.subscribe(id, (s) => {
      if (ok(s)) resolve({ snapshot: s, stop });
    });
  });
}

for (
  const mode of [{ watch: true as const }, {
    watch: false as const,
    pollMs: 10,
  }]
) {
  const name = mode.watch ? "kv.watch" : "polling";
  Deno.test(`hub (${name}): N listeners of one job share one source, released with the last`, async () => {
    using kv = await Deno.openKv(":memory:");
    const hub = new JobHub(kv, mode);
    const job = queuedJob(1000);
    await createJob(kv, job, 10);
    const listeners = await Promise.all(
      Array.from(
        { length: 25 },
        () => next(hub, job.id, (s) => s.job?.status === "queued"),
      ),
    );
    assert.equal(hub.watching, 1);
    assert.equal(hub.listeners, 25);
    assert.equal(hub.listenersOf(job.id), 25);
    assert.equal(hub.listenersOf("another"), 0);
    assert.equal(hub.latest(job.id)?.job?.session, job.session);
    const progressed = Promise.all(
      Array.from(
        { length: 3 },
        () => next(hub, job.id, (s) => s.progress?.progress === 42),
      ),
    );
    await kv.set(keys.progress(job.id), { progress: 42, at: 2000 });
    const seen = await progressed;
    assert.ok(
      seen.every((s) => s.snapshot.version > listeners[0].snapshot.version),
    );
    for (const l of [...listeners, ...seen]) l.stop();
    assert.equal(hub.watching, 0);
    assert.equal(hub.listeners, 0);
    assert.equal(hub.latest(job.id), null, "not kept once unwatched");
  });
}
