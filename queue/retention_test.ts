import assert from "node:assert/strict";
import type { FileKind, Store } from "../media/store.ts";
import { queuedJob } from "../tests/_fakes.ts";
import { putImage, STORES } from "../tests/_stores.ts";
import { cancelJob, createJob, getJob } from "./jobs.ts";
import { keys } from "./keys.ts";
import { claimNext, finishJob } from "./lease.ts";
import { sweepExpired, sweepOrphans } from "./retention.ts";

const HOUR = 3_600_000;
const ONE = new Uint8Array([1]);

/** Puts a job's video copies in place, as the model does. */
async function putVideo(store: Store, id: string) {
  const ws = await store.workspace(id);
  for (const path of Object.values(ws.outputs)) await Deno.writeFile(path, ONE);
  await ws.commit();
}

const has = async (store: Store, id: string, kind: FileKind) => {
  const file = await store.open(id, kind);
  file?.close();
  return file !== null;
};

for (const [name, make] of Object.entries(STORES)) {
  Deno.test(`retention (${name} store): a job that ended RETENTION_HOURS ago is deleted with its files; younger ones stay`, async () => {
    using kv = await Deno.openKv(":memory:");
    await using t = await make();
    const old = queuedJob(1000), young = queuedJob(2000);
    for (const j of [old, young]) {
      await createJob(kv, j, 10);
      await putImage(t.store, j.id, ONE);
    }
    await claimNext(kv, {
      owner: "w",
      now: 10_000,
      leaseMs: 5000,
      retentionMs: HOUR,
    });
    await putVideo(t.store, old.id);
    await finishJob(kv, {
      owner: "w",
      jobId: old.id,
      now: 20_000,
      retentionMs: HOUR,
      result: { video: { bytes: 1 } },
    });
    await cancelJob(kv, young.id, 30_000, HOUR);

    assert.equal(await sweepExpired(kv, t.store, 20_000 + HOUR - 1, HOUR), 0);
    assert.equal((await getJob(kv, old.id))?.status, "done");
    assert.equal(await has(t.store, old.id, "video"), true);

    assert.equal(await sweepExpired(kv, t.store, 20_000 + HOUR, HOUR), 1);
    assert.equal(await getJob(kv, old.id), null);
    assert.equal(
      (await kv.get(keys.sessionJob(old.session, old.id))).value,
      null,
    );
    for (const kind of ["video", "fragments", "cenc", "image"] as const) {
      assert.equal(await has(t.store, old.id, kind), false, kind);
    }
    assert.equal((await getJob(kv, young.id))?.status, "cancelled");

    assert.equal(await sweepExpired(kv, t.store, 30_000 + HOUR, HOUR), 1);
    assert.equal(await getJob(kv, young.id), null);
  });

  Deno.test(`orphans (${name} store): files no live job needs are swept, after the grace period only`, async () => {
    using kv = await Deno.openKv(":memory:");
    await using t = await make();
    const waiting = queuedJob(1000);
    await createJob(kv, waiting, 10);
    await putImage(t.store, waiting.id, ONE); // needed
    await putImage(t.store, "01NOJOB0000000000000000000", ONE); // crash before commit
    await putVideo(t.store, waiting.id); // 3 copies of a video for a job not done
    const killed = await t.store.workspace(waiting.id); // an encoder killed mid-write
    await Deno.writeFile(killed.outputs.video, ONE);
    const cut = await t.store.receive(); // an upload cut by a crash
    await cut.write(ONE);

    const partials = (await Array.fromAsync(t.store.entries()))
      .filter((e) => e.kind === "partial");
    assert.equal(partials.length, 2, "the killed encode and the cut upload");
    const now = Date.now();
    assert.equal(
      await sweepOrphans(kv, t.store, now, 60_000),
      0,
      "young files are left alone",
    );
    assert.equal(
      await sweepOrphans(kv, t.store, now + 60_001, 60_000),
      1 + 3 + 2,
    );
    const left = await Array.fromAsync(t.store.entries());
    assert.deepEqual(left.map((f) => [f.kind, f.id]), [["image", waiting.id]]);
    await cut.discard();
  });
}
