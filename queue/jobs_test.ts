import assert from "node:assert/strict";
import { queuedJob } from "../tests/_fakes.ts";
import {
  cancelJob,
  claimNext,
  createJob,
  getJob,
  listSessionJobs,
} from "./jobs.ts";
import { keys } from "./keys.ts";
import { QueueView, toApiJob } from "./view.ts";

const HOUR = 3_600_000;
const claim = (kv: Deno.Kv, owner: string, now: number) =>
  claimNext(kv, { owner, now, leaseMs: 5_000, retentionMs: HOUR });

Deno.test("concurrent claims on one waiting job: exactly one wins", async () => {
  using kv = await Deno.openKv(":memory:");
  const job = queuedJob(1000);
  await createJob(kv, job, 10);
  const results = await Promise.all(
    Array.from({ length: 50 }, (_, i) => claim(kv, `worker-${i}`, 2000)),
  );
  const winners = results.filter((r) => r !== null);
  assert.equal(winners.length, 1);
  assert.equal(winners[0]!.id, job.id);
  assert.equal((await getJob(kv, job.id))!.status, "processing");
  assert.equal((await kv.get(keys.depth())).value, 0);
});

Deno.test("the slot is held while the lease lives, and the oldest job comes first", async () => {
  using kv = await Deno.openKv(":memory:");
  const first = queuedJob(1000), second = queuedJob(2000);
  await createJob(kv, second, 10);
  await createJob(kv, first, 10);
  assert.equal((await claim(kv, "a", 3000))!.id, first.id);
  assert.equal(await claim(kv, "b", 4000), null); // a's lease runs to 8000
  assert.equal(await claim(kv, "a", 7999), null); // even for a: one job at a time
});

Deno.test("an expired lease (dead worker) puts its job back first in line, attempt counted", async () => {
  using kv = await Deno.openKv(":memory:");
  const first = queuedJob(1000), second = queuedJob(2000);
  await createJob(kv, first, 10);
  await createJob(kv, second, 10);
  await claim(kv, "dead", 3000);
  const taken = await claim(kv, "alive", 3000 + 5_001);
  assert.equal(taken!.id, first.id);
  assert.equal(taken!.attempts, 2);
  const progress = await kv.get<{ progress: number }>(keys.progress(first.id));
  assert.equal(progress.value?.progress, 0); // starts again from 0, visibly
});

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

Deno.test("a job whose worker dies MAX_ATTEMPTS times fails with a reason instead of looping", async () => {
  using kv = await Deno.openKv(":memory:");
  const job = queuedJob(1000);
  await createJob(kv, job, 10);
  let now = 2000;
  for (let attempt = 1; attempt <= 3; attempt++) {
    const taken = await claim(kv, `dies-${attempt}`, now);
    assert.equal(taken?.attempts, attempt);
    now += 5_001; // its lease runs out
  }
  assert.equal(await claim(kv, "alive", now), null);
  const failed = (await getJob(kv, job.id))!;
  assert.equal(failed.status, "failed");
  assert.equal(failed.error?.code, "model_crashed");
  assert.match(failed.error!.message, /3 times/);
});
