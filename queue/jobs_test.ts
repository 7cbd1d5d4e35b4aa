import assert from "node:assert/strict";
import { queuedJob } from "../tests/_fakes.ts";
import { dataBytes } from "./data_bytes.ts";
import {
  cancelJob,
  createJob,
  discardJob,
  getJob,
  listSessionJobs,
} from "./jobs.ts";
import { GET_MANY_MAX, keys } from "./keys.ts";
import { claimNext, finishJob } from "./lease.ts";
import { QueueView, toApiJob } from "./view.ts";

const HOUR = 3_600_000;
const claim = (kv: Deno.Kv, owner: string, now: number) =>
  claimNext(kv, { owner, now, leaseMs: 5_000, retentionMs: HOUR });

Deno.test("createJob refuses beyond MAX_QUEUE, even when uploads race", async () => {
  using kv = await Deno.openKv(":memory:");
  const results = await Promise.all(
    Array.from(
      { length: 30 },
      (_, i) => createJob(kv, queuedJob(1000 + i), 12),
    ),
  );
  assert.equal(results.filter((r) => r.ok).length, 12);
  assert.equal((await kv.get(keys.depth())).value, 12);
  const pending = await Array.fromAsync(kv.list({ prefix: keys.pendingAll() }));
  assert.equal(pending.length, 12);
});

Deno.test("positions and ETA come from KV; a cancel moves the jobs behind it up", async () => {
  using kv = await Deno.openKv(":memory:");
  const jobs = [
    queuedJob(1000),
    queuedJob(2000),
    queuedJob(3000),
    queuedJob(4000),
  ];
  for (const j of jobs) await createJob(kv, j, 10);
  await claim(kv, "w", 10_000); // jobs[0] runs from 10 000
  const view = new QueueView(kv);
  const eta = async (i: number, now: number) => {
    const job = (await getJob(kv, jobs[i].id))!;
    return toApiJob(job, {
      queue: await view.state(),
      progress: null,
      now,
      modelMs: 30_000,
      video: null,
    });
  };
  const a = await eta(2, 20_000);
  assert.deepEqual([a.position, a.etaSeconds], [2, 20 + 60]); // 20 s left + 2 × 30 s
  assert.deepEqual([
    (await eta(0, 20_000)).etaSeconds,
    (await eta(0, 20_000)).position,
  ], [20, null]);
  assert.ok(
    typeof await cancelJob(kv, jobs[1].id, 21_000, 3_600_000) === "object",
  );
  const b = await eta(2, 21_000);
  assert.deepEqual([b.position, b.etaSeconds], [1, 19 + 30]);
  assert.equal((await eta(3, 21_000)).position, 2);
  assert.equal((await eta(1, 21_000)).status, "cancelled");
  assert.equal(await cancelJob(kv, jobs[1].id, 22_000, 3_600_000), "final");
});

Deno.test("a session lists only its own jobs, newest first", async () => {
  using kv = await Deno.openKv(":memory:");
  const mine = [queuedJob(1000, "me"), queuedJob(3000, "me")];
  await createJob(kv, mine[0], 10);
  await createJob(kv, queuedJob(2000, "other"), 10);
  await createJob(kv, mine[1], 10);
  const listed = await listSessionJobs(kv, "me");
  assert.deepEqual(listed.map((j) => j.id), [mine[1].id, mine[0].id]);
});

Deno.test("a session with more jobs than one getMany batch lists them all", async () => {
  using kv = await Deno.openKv(":memory:");
  const n = 2 * GET_MANY_MAX + 3;
  const jobs = Array.from({ length: n }, (_, i) => queuedJob(1000 + i, "me"));
  for (const j of jobs) await createJob(kv, j, n);
  const listed = await listSessionJobs(kv, "me");
  assert.deepEqual(listed.map((j) => j.id), jobs.map((j) => j.id).reverse());
});

/** `kv` whose first atomic commit lets `before` run first: a write racing it. */
function racing(kv: Deno.Kv, before: () => Promise<unknown>): Deno.Kv {
  let raced = false;
  return new Proxy(kv, {
    get(target, prop) {
      if (prop === "atomic") {
        return () => {
          const op = target.atomic();
          const commit = op.commit.bind(op);
          op.commit = async () => {
            if (!raced) {
              raced = true;
              await before();
            }
            return await commit();
          };
          return op;
        };
      }
      const value = Reflect.get(target, prop);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

Deno.test("discardJob racing the model's end: the cancel loses, and the ended job is deleted with its bytes", async () => {
  using kv = await Deno.openKv(":memory:");
  const job = queuedJob(1000);
  assert.equal((await createJob(kv, job, 10)).ok, true);
  assert.equal((await claim(kv, "w", 2000))?.id, job.id);
  const ended = racing(kv, () =>
    finishJob(kv, {
      owner: "w",
      jobId: job.id,
      now: 2500,
      retentionMs: HOUR,
      result: { error: { code: "model_failed", message: "no" } },
    }));
  const result = await discardJob(ended, job.id, 3000, HOUR);
  assert.equal(result?.ended, "deleted");
  assert.equal(result?.job.status, "failed", "what was deleted");
  assert.equal(await getJob(kv, job.id), null);
  assert.deepEqual(await listSessionJobs(kv, job.session), []);
  assert.equal(await dataBytes(kv), 0);
  assert.deepEqual(
    await Array.fromAsync(kv.list({ prefix: keys.finishedAll() })),
    [],
  );
});

Deno.test("discardJob: a running job is cancelled, and only an ended one deleted; a missing one is null", async () => {
  using kv = await Deno.openKv(":memory:");
  const job = queuedJob(1000);
  await createJob(kv, job, 10);
  await claim(kv, "w", 2000);
  const first = await discardJob(kv, job.id, 3000, HOUR);
  assert.equal(first?.ended, "cancelled");
  assert.equal((await getJob(kv, job.id))?.status, "cancelled");
  assert.equal(await dataBytes(kv), job.image.bytes, "its image is kept");
  assert.equal((await discardJob(kv, job.id, 4000, HOUR))?.ended, "deleted");
  assert.equal(await discardJob(kv, job.id, 5000, HOUR), null);
  assert.equal(await dataBytes(kv), 0);
});

Deno.test("createJob with retryOf: the commit checks the original, so a change between the read and the commit refuses it", async () => {
  using kv = await Deno.openKv(":memory:");
  const original = queuedJob(1000);
  await createJob(kv, original, 10);
  await cancelJob(kv, original.id, 1500, HOUR);
  const entry = await kv.get(keys.job(original.id));
  const retryOf = {
    id: original.id,
    versionstamp: entry.versionstamp!,
    expireIn: HOUR,
  };
  // Another process's retry marks the original after this one read it.
  const marked = racing(kv, () => kv.set(keys.retried(original.id), "other"));
  assert.deepEqual(
    await createJob(marked, queuedJob(2000), 10, retryOf),
    { ok: false, reason: "not_retryable" },
  );
  assert.equal((await kv.get(keys.depth())).value, 0, "nothing queued");

  const other = queuedJob(3000);
  await createJob(kv, other, 10);
  await cancelJob(kv, other.id, 3500, HOUR);
  const again = {
    id: other.id,
    versionstamp: (await kv.get(keys.job(other.id))).versionstamp!,
    expireIn: HOUR,
  };
  const first = queuedJob(4000);
  assert.equal((await createJob(kv, first, 10, again)).ok, true);
  assert.equal((await kv.get(keys.retried(other.id))).value, first.id);
  assert.deepEqual(await createJob(kv, queuedJob(5000), 10, again), {
    ok: false,
    reason: "not_retryable",
  });
});
