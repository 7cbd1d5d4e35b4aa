import assert from "node:assert/strict";
import { DiskStore } from "../media/store.ts";
import { queuedJob } from "../tests/_fakes.ts";
import { cancelJob, createJob, getJob } from "./jobs.ts";
import { keys } from "./keys.ts";
import { claimNext, finishJob } from "./lease.ts";
import { sweepExpired, sweepOrphans } from "./retention.ts";

const HOUR = 3_600_000;

async function setup() {
  const dir = await Deno.makeTempDir();
  const kv = await Deno.openKv(":memory:");
  const store = await new DiskStore(dir).init();
  return {
    kv,
    store,
    dir,
    async [Symbol.asyncDispose]() {
      kv.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

const exists = (path: string) => Deno.stat(path).then(() => true, () => false);

Deno.test("retention: a job that ended RETENTION_HOURS ago is deleted with its files; younger ones stay", async () => {
  await using t = await setup();
  const old = queuedJob(1000), young = queuedJob(2000);
  for (const j of [old, young]) {
    await createJob(t.kv, j, 10);
    await Deno.writeFile(t.store.uploadPath(j.id), new Uint8Array([1]));
  }
  await claimNext(t.kv, {
    owner: "w",
    now: 10_000,
    leaseMs: 5000,
    retentionMs: HOUR,
  });
  await Deno.writeFile(t.store.videoPath(old.id), new Uint8Array([1]));
  await finishJob(t.kv, {
    owner: "w",
    jobId: old.id,
    now: 20_000,
    retentionMs: HOUR,
    result: { video: { bytes: 1 } },
  });
  await cancelJob(t.kv, young.id, 30_000, HOUR);

  assert.equal(await sweepExpired(t.kv, t.store, 20_000 + HOUR - 1, HOUR), 0);
  assert.equal((await getJob(t.kv, old.id))?.status, "done");

  assert.equal(await sweepExpired(t.kv, t.store, 20_000 + HOUR, HOUR), 1);
  assert.equal(await getJob(t.kv, old.id), null);
  assert.equal(
    (await t.kv.get(keys.sessionJob(old.session, old.id))).value,
    null,
  );
  assert.equal(await exists(t.store.videoPath(old.id)), false);
  assert.equal(await exists(t.store.uploadPath(old.id)), false);
  assert.equal((await getJob(t.kv, young.id))?.status, "cancelled");

  assert.equal(await sweepExpired(t.kv, t.store, 30_000 + HOUR, HOUR), 1);
  assert.equal(await getJob(t.kv, young.id), null);
});

Deno.test("orphans: files no live job needs are swept, after the grace period only", async () => {
  await using t = await setup();
  const waiting = queuedJob(1000);
  await createJob(t.kv, waiting, 10);
  await Deno.writeFile(t.store.uploadPath(waiting.id), new Uint8Array([1])); // needed
  await Deno.writeFile(
    t.store.uploadPath("01NOJOB0000000000000000000"),
    new Uint8Array([1]),
  ); // crash before commit
  await Deno.writeFile(t.store.videoPath(waiting.id), new Uint8Array([1])); // a video for a job not done
  await Deno.writeFile(t.store.videoTempPath(waiting.id), new Uint8Array([1])); // half-written by a killed encoder
  const temp = await t.store.createTemp(".upload"); // an upload cut by a crash
  temp.file.close();

  const now = Date.now();
  assert.equal(
    await sweepOrphans(t.kv, t.store, now, 60_000),
    0,
    "young files are left alone",
  );
  assert.equal(await sweepOrphans(t.kv, t.store, now + 60_001, 60_000), 4);
  const left = await Array.fromAsync(t.store.list());
  assert.deepEqual(left.map((f) => [f.kind, f.id]), [["upload", waiting.id]]);
});
