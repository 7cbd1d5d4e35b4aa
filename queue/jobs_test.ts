import assert from "node:assert/strict";
import { queuedJob } from "../tests/_fakes.ts";
import { cancelJob, createJob, getJob, listSessionJobs } from "./jobs.ts";
import { GET_MANY_MAX, keys } from "./keys.ts";
import { claimNext } from "./lease.ts";
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
