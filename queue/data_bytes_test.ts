/**
 * The count behind `DATA_MAX_BYTES` through a job's life, on both stores: it
 * matches the bytes kept after every step, and the sweep's recount from the
 * files agrees with it (or, after a drift, sets it right).
 */
import assert from "node:assert/strict";
import type { Store } from "../media/store.ts";
import { queuedJob } from "../tests/_fakes.ts";
import { putImage, STORES } from "../tests/_stores.ts";
import { addDataBytes, dataBytes } from "./data_bytes.ts";
import { cancelJob, createJob, discardJob, getJob } from "./jobs.ts";
import { keys } from "./keys.ts";
import { claimNext, finishJob } from "./lease.ts";
import { sweepExpired, sweepOrphans } from "./retention.ts";

/** The line's caps wide open but for the kept bytes. */
const maxBytes = (maxDataBytes: number) => ({
  maxQueue: 10,
  maxWaitingPerSession: Infinity,
  maxWaitingPerClient: Infinity,
  maxDataBytes,
});

const HOUR = 3_600_000;
const IMAGE = 937; // queuedJob's image bytes
/** The video copies the model writes: MP4, fragments, CENC. */
const COPIES = { video: 300, fragments: 400, cenc: 500 };
const VIDEO = COPIES.video + COPIES.fragments + COPIES.cenc;
const GRACE = 60_000;

const claim = (kv: Deno.Kv, now: number) =>
  claimNext(kv, { owner: "w", now, leaseMs: 5_000, retentionMs: HOUR });

/** An upload as `acceptUpload` makes it: the image kept, then the job. */
async function upload(kv: Deno.Kv, store: Store, createdAt: number) {
  const job = queuedJob(createdAt);
  await putImage(store, job.id, new Uint8Array(job.image.bytes));
  assert.equal((await createJob(kv, job, maxBytes(10 * IMAGE))).ok, true);
  return job;
}

/** Runs a claimed job to `done` as the worker does, and removes its image (when done). */
async function finish(
  kv: Deno.Kv,
  store: Store,
  id: string,
  now: number,
  removeImage = true,
) {
  const ws = await store.workspace(id);
  for (const [kind, size] of Object.entries(COPIES)) {
    await Deno.writeFile(
      ws.outputs[kind as keyof typeof COPIES],
      new Uint8Array(size),
    );
  }
  const { bytes, stored } = await ws.commit();
  assert.equal(stored, VIDEO);
  const ok = await finishJob(kv, {
    owner: "w",
    jobId: id,
    now,
    retentionMs: HOUR,
    result: { video: { bytes, stored } },
  });
  if (removeImage) await store.removeImage(id);
  return ok;
}

/** The recount agrees: it leaves the count as it was. */
async function recounted(kv: Deno.Kv, store: Store, now: number) {
  await sweepOrphans(kv, store, now, GRACE);
  return await dataBytes(kv);
}

for (const [name, make] of Object.entries(STORES)) {
  Deno.test(`data bytes (${name} store): an upload counts its image, a done job its video copies instead, retention nothing`, async () => {
    using kv = await Deno.openKv(":memory:");
    await using t = await make();
    const job = await upload(kv, t.store, 1000);
    assert.equal(await dataBytes(kv), IMAGE);
    assert.equal(await recounted(kv, t.store, 1000), IMAGE);

    await claim(kv, 2000);
    assert.equal(await dataBytes(kv), IMAGE, "a running job keeps its image");
    assert.equal(await finish(kv, t.store, job.id, 3000), true);
    assert.equal(await dataBytes(kv), VIDEO, "every copy, and no image");
    assert.equal(await recounted(kv, t.store, 3000), VIDEO);

    assert.equal(await sweepExpired(kv, t.store, 3000 + HOUR, HOUR), 1);
    assert.equal(await dataBytes(kv), 0);
    assert.equal(await recounted(kv, t.store, 3000 + HOUR), 0);
  });

  Deno.test(`data bytes (${name} store): a cancelled or failed job keeps its image counted until deleted or expired; a video made for a cancelled job never counts`, async () => {
    using kv = await Deno.openKv(":memory:");
    await using t = await make();
    const waiting = await upload(kv, t.store, 1000);
    const running = await upload(kv, t.store, 500);
    assert.equal(await dataBytes(kv), 2 * IMAGE);

    assert.equal((await claim(kv, 2000))?.id, running.id);
    await cancelJob(kv, waiting.id, 2000, HOUR);
    assert.equal(await dataBytes(kv), 2 * IMAGE, "kept for a retry");
    assert.equal(await recounted(kv, t.store, 2000 + GRACE), 2 * IMAGE);

    // Cancelled while its video was being stored: the worker removes the
    // video, and the image stays.
    await cancelJob(kv, running.id, 3000, HOUR);
    assert.equal(await finish(kv, t.store, running.id, 3000, false), false);
    await t.store.removeVideo(running.id);
    assert.equal(await dataBytes(kv), 2 * IMAGE);
    assert.equal(await recounted(kv, t.store, 3000 + GRACE), 2 * IMAGE);

    // Deleted: the bytes go in the commit, the files just after.
    assert.equal(
      (await discardJob(kv, waiting.id, 4000, HOUR))?.ended,
      "deleted",
    );
    await t.store.removeJob(waiting.id);
    assert.equal(await dataBytes(kv), IMAGE);
    assert.equal(await recounted(kv, t.store, 4000 + GRACE), IMAGE);

    // A job failed after its worker died MAX_ATTEMPTS times keeps its image.
    const crashed = await upload(kv, t.store, 4000);
    let now = 5000;
    for (let i = 0; i < 4; i++, now += 5_001) await claim(kv, now);
    assert.equal((await getJob(kv, crashed.id))?.status, "failed");
    assert.equal(await dataBytes(kv), 2 * IMAGE);
    assert.equal(await recounted(kv, t.store, now + GRACE), 2 * IMAGE);

    // Retention takes them, files and bytes.
    assert.equal(await sweepExpired(kv, t.store, now + HOUR, HOUR), 2);
    assert.equal(await dataBytes(kv), 0);
    assert.equal(await recounted(kv, t.store, now + HOUR), 0);
  });

  Deno.test(`data bytes (${name} store): a job that ended before images were kept (no imageKept) counts nothing and its image is swept`, async () => {
    using kv = await Deno.openKv(":memory:");
    await using t = await make();
    const job = await upload(kv, t.store, 1000);
    await cancelJob(kv, job.id, 2000, HOUR);
    const { imageKept: _, ...old } = (await getJob(kv, job.id))!;
    await kv.set(keys.job(job.id), old);
    // The files carry wall-clock times: past the grace by the wall clock.
    assert.equal(await recounted(kv, t.store, Date.now() + GRACE), 0);
    assert.equal(await t.store.open(job.id, "image"), null);
  });

  Deno.test(`data bytes (${name} store): a job whose image would pass the cap is not created, and nothing changes`, async () => {
    using kv = await Deno.openKv(":memory:");
    await using t = await make();
    await upload(kv, t.store, 1000);
    const over = queuedJob(2000);
    assert.deepEqual(await createJob(kv, over, maxBytes(2 * IMAGE - 1)), {
      ok: false,
      reason: "insufficient_storage",
      dataBytes: IMAGE,
    });
    assert.equal(await getJob(kv, over.id), null);
    assert.equal((await kv.get(keys.depth())).value, 1);
    assert.equal(await dataBytes(kv), IMAGE);
    assert.equal((await createJob(kv, over, maxBytes(2 * IMAGE))).ok, true);
    assert.equal(await dataBytes(kv), 2 * IMAGE, "exactly at the cap is fine");
  });

  Deno.test(`data bytes (${name} store): the sweep's recount sets a drifted count right, up or down`, async () => {
    using kv = await Deno.openKv(":memory:");
    await using t = await make();
    const kept = await upload(kv, t.store, 1000);
    const gone = await upload(kv, t.store, 1500);
    // Drift up: a job that KV expired before the sweep deleted it (its
    // bytes still counted), and a count changed with no file behind it.
    await kv.delete(keys.job(gone.id));
    await addDataBytes(kv.atomic(), 1_000_000).commit();
    assert.equal(await dataBytes(kv), 2 * IMAGE + 1_000_000);
    // Before the grace period its image is left on disk, but not counted.
    assert.equal(await recounted(kv, t.store, 1000), IMAGE);
    // Drift down, past zero: files kept that the count lost.
    await addDataBytes(kv.atomic(), -5 * IMAGE).commit();
    assert.equal(await dataBytes(kv), 0, "never read below zero");
    assert.equal(await recounted(kv, t.store, 1000 + GRACE), IMAGE);
    assert.equal((await getJob(kv, kept.id))?.status, "queued");
  });
}
