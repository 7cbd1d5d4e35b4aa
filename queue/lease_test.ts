import assert from "node:assert/strict";
import { queuedJob } from "../tests/_fakes.ts";
import { cancelJob, createJob, getJob } from "./jobs.ts";
import { keys } from "./keys.ts";
import {
  claimNext,
  type Reclaimed,
  reclaimExpired,
  renewLease,
} from "./lease.ts";

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

Deno.test("a renewal extends the holder's lease only; a cancelled job is told to stop", async () => {
  using kv = await Deno.openKv(":memory:");
  const job = queuedJob(1000);
  await createJob(kv, job, 10);
  await claim(kv, "a", 2000);
  const renew = (owner: string, now: number) =>
    renewLease(kv, { owner, jobId: job.id, now, leaseMs: 5_000, progress: 10 });
  assert.equal(await renew("b", 3000), "lost");
  assert.equal(await renew("a", 3000), "ok");
  assert.equal(await claim(kv, "b", 7500), null, "the lease now runs to 8000");
  await cancelJob(kv, job.id, 4000, HOUR);
  assert.equal(await renew("a", 4000), "cancelled");
});

Deno.test("a dead worker's job taken back is told to the caller (the logs): requeued with its attempts, then failed", async () => {
  using kv = await Deno.openKv(":memory:");
  const job = queuedJob(1000);
  await createJob(kv, job, 10);
  const told: Reclaimed[] = [];
  let now = 2000;
  for (let attempt = 1; attempt <= 3; attempt++) {
    await claimNext(kv, {
      owner: `dies-${attempt}`,
      now,
      leaseMs: 5_000,
      retentionMs: HOUR,
      onReclaimed: (r) => told.push(r),
    });
    now += 5_001;
  }
  await reclaimExpired(kv, now, HOUR, (r) => told.push(r));
  assert.deepEqual(told, [
    { jobId: job.id, outcome: "requeued", attempts: 1, slot: "model" },
    { jobId: job.id, outcome: "requeued", attempts: 2, slot: "model" },
    { jobId: job.id, outcome: "failed", attempts: 3, slot: "model" },
  ]);
});
