/**
 * The cap on images kept for a retry per client address: past it, a cancel
 * keeps no image and gives its bytes back in its own commit.
 */
import assert from "node:assert/strict";
import { queuedJob } from "../tests/_fakes.ts";
import { STORES } from "../tests/_stores.ts";
import { dataBytes } from "./data_bytes.ts";
import { cancelJob, createJob, discardJob, isRetryable } from "./jobs.ts";
import { sweepExpired } from "./retention.ts";
import { claimNext, finishJob } from "./lease.ts";

const HOUR = 3_600_000;
const CAP = 2;
const BYTES = queuedJob(0).image.bytes;

/** Uploads then cancels one job of `client` at `t`; returns the cancelled record. */
async function uploadAndCancel(kv: Deno.Kv, t: number, client = "192.0.2.1") {
  const job = queuedJob(t, "s1", client);
  assert.equal((await createJob(kv, job, 100)).ok, true);
  const cancelled = await cancelJob(kv, job.id, t + 1, HOUR, CAP);
  assert.ok(cancelled && cancelled !== "final");
  return cancelled;
}

Deno.test("kept images: past the cap a client's cancel keeps no image (not retryable, bytes given back); other clients keep theirs", async () => {
  using kv = await Deno.openKv(":memory:");
  const a = await uploadAndCancel(kv, 1000);
  const b = await uploadAndCancel(kv, 2000);
  assert.deepEqual([a.imageKept, b.imageKept], [true, true]);
  assert.equal(await dataBytes(kv), 2 * BYTES);
  const c = await uploadAndCancel(kv, 3000);
  assert.equal(c.imageKept, false);
  assert.equal(isRetryable(c), false);
  assert.equal(
    await dataBytes(kv),
    2 * BYTES,
    "the third image's bytes given back",
  );
  // Another address has its own cap.
  const other = await uploadAndCancel(kv, 4000, "198.51.100.7");
  assert.equal(other.imageKept, true);
  assert.equal(await dataBytes(kv), 3 * BYTES);
});

Deno.test("kept images: a deleted kept job frees its place under the cap; a failed job's kept image counts too", async () => {
  using kv = await Deno.openKv(":memory:");
  const a = await uploadAndCancel(kv, 1000);
  await uploadAndCancel(kv, 2000);
  assert.equal((await discardJob(kv, a.id, 2500, HOUR))?.ended, "deleted");
  assert.equal((await uploadAndCancel(kv, 3000)).imageKept, true);
  assert.equal((await uploadAndCancel(kv, 4000)).imageKept, false);
  // A failure keeps its image (no cap on the model's failures), and counts.
  using kv2 = await Deno.openKv(":memory:");
  const failed = queuedJob(1000);
  await createJob(kv2, failed, 100);
  await claimNext(kv2, {
    owner: "w",
    now: 1100,
    leaseMs: 5000,
    retentionMs: HOUR,
  });
  await finishJob(kv2, {
    owner: "w",
    jobId: failed.id,
    now: 1200,
    retentionMs: HOUR,
    result: { error: { code: "model_failed", message: "no" } },
  });
  assert.equal((await uploadAndCancel(kv2, 2000)).imageKept, true);
  assert.equal((await uploadAndCancel(kv2, 3000)).imageKept, false);
});

Deno.test("kept images: the retention sweep frees the places of the jobs it deletes", async () => {
  using kv = await Deno.openKv(":memory:");
  await using t = await STORES.memory();
  await uploadAndCancel(kv, 1000);
  await uploadAndCancel(kv, 2000);
  assert.equal(await sweepExpired(kv, t.store, 2002 + HOUR, HOUR), 2);
  assert.equal((await uploadAndCancel(kv, 3000 + HOUR)).imageKept, true);
});

Deno.test("kept images: cancels of one client racing each other keep at most the cap", async () => {
  using kv = await Deno.openKv(":memory:");
  const jobs = Array.from({ length: 6 }, (_, i) => queuedJob(1000 + i));
  for (const j of jobs) await createJob(kv, j, 100);
  // Running on six slots: their cancels change no shared key of the line.
  for (let i = 0; i < jobs.length; i++) {
    assert.ok(
      await claimNext(kv, {
        owner: `w${i}`,
        slot: `slot${i}`,
        now: 1500,
        leaseMs: 5000,
        retentionMs: HOUR,
      }),
    );
  }
  const results = await Promise.all(
    jobs.map((j) => cancelJob(kv, j.id, 2000, HOUR, CAP)),
  );
  const kept = results.filter((r) => r && r !== "final" && r.imageKept);
  assert.equal(kept.length, CAP);
  assert.equal(await dataBytes(kv), CAP * BYTES);
});
