import assert from "node:assert/strict";
import { memoryLogger } from "../log.ts";
import { EncodeError, type Encoder } from "../media/clip.ts";
import { FakeClock, FakeEncoder, queuedJob } from "../tests/_fakes.ts";
import { putImage, STORES, type TestStore } from "../tests/_stores.ts";
import {
  cancelJob,
  createJob,
  getJob,
  type JobRecord,
  type Progress,
} from "./jobs.ts";
import { keys } from "./keys.ts";
import { claimNext } from "./lease.ts";
import { progressAt, runJob } from "./model.ts";
import { ModelWorker } from "./worker.ts";

const MODEL_MS = 30_000;

async function setup(makeStore: () => Promise<TestStore>) {
  const kv = await Deno.openKv(":memory:");
  const clock = new FakeClock();
  const fake = new FakeEncoder();
  /** The image each encode was given, in order (each job's image is its id). */
  const inputs: string[] = [];
  const encoder: Encoder = {
    async makeClip(req) {
      inputs.push(await Deno.readTextFile(req.input).catch(() => "(none)"));
      return fake.makeClip(req);
    },
    transcode: (req) => fake.transcode(req),
  };
  const stored = await makeStore();
  const store = stored.store;
  const deps = {
    kv,
    clock,
    encoder,
    store,
    owner: "worker-1",
    modelMs: MODEL_MS,
    leaseMs: 5_000,
    tickMs: 200,
    idleMs: 2_000,
    retentionMs: 3_600_000,
  };
  const enqueue = async (n: number) => {
    const jobs: JobRecord[] = [];
    for (let i = 0; i < n; i++) {
      const job = queuedJob(clock.now() - 1000 + i);
      await putImage(store, job.id, new TextEncoder().encode(job.id));
      await createJob(kv, job, 100);
      jobs.push(job);
    }
    return jobs;
  };
  return {
    ...deps,
    encoder: fake,
    inputs,
    deps,
    enqueue,
    async [Symbol.asyncDispose]() {
      kv.close();
      await stored[Symbol.asyncDispose]();
    },
  };
}

Deno.test("progressAt: one decimal, monotonic, never 100 before done", () => {
  assert.equal(progressAt(0, MODEL_MS), 0);
  assert.equal(progressAt(15_000, MODEL_MS), 50);
  assert.equal(progressAt(12_345, MODEL_MS), 41.1);
  assert.equal(progressAt(29_999, MODEL_MS), 99);
  assert.equal(progressAt(60_000, MODEL_MS), 99);
});

/** Runs the worker until `n` jobs have ended, moving the fake clock as it sleeps. */
async function drive(
  t: Awaited<ReturnType<typeof setup>>,
  worker: ModelWorker,
  ended: () => number,
  n: number,
) {
  while (ended() < n) {
    await t.clock.untilSleeping(1);
    if (ended() >= n) break;
    if (t.clock.sleeping > 0) t.clock.wakeNext();
  }
  await worker.stop();
}

for (const [name, make] of Object.entries(STORES)) {
  Deno.test(`the model takes exactly MODEL_DURATION_MS, writing progress at least 4 times a second (${name} store)`, async () => {
    await using t = await setup(make);
    const [job] = await t.enqueue(1);
    const claimed = (await claimNext(t.kv, {
      owner: t.owner,
      now: t.clock.now(),
      leaseMs: 5_000,
      retentionMs: 1,
    }))!;
    const seen: Progress[] = [];
    let outcome: string | null = null;
    const run = runJob(t.deps, claimed, new AbortController().signal).then((
      o,
    ) => (outcome = o));
    while (outcome === null) {
      await Promise.race([t.clock.untilSleeping(1), run]);
      if (outcome !== null) break;
      const p = (await t.kv.get<Progress>(keys.progress(job.id))).value!;
      if (seen.at(-1)?.at !== p.at) seen.push(p);
      if (t.clock.sleeping > 0) t.clock.wakeNext(); // else it woke itself (encoder done)
    }
    assert.equal(outcome, "done");
    const done = (await getJob(t.kv, job.id))!;
    assert.equal(done.status, "done");
    assert.equal(done.finishedAt! - done.startedAt!, MODEL_MS);
    assert.equal(
      (await t.kv.get<Progress>(keys.progress(job.id))).value!.progress,
      100,
    );
    // Progress: rising, below 100 while running, written ≥ 4 times in every second.
    for (let i = 1; i < seen.length; i++) {
      assert.ok(seen[i].progress >= seen[i - 1].progress);
    }
    assert.ok(seen.every((p) => p.progress < 100));
    for (let s = 0; s < MODEL_MS / 1000; s++) {
      const from = done.startedAt! + s * 1000;
      const writes = seen.filter((p) =>
        p.at >= from && p.at < from + 1000
      ).length;
      assert.ok(writes >= 4, `second ${s}: ${writes} writes`);
    }
    assert.equal(t.encoder.calls.length, 1);
  });

  Deno.test(`one job at a time, in arrival order, the next starting the moment one ends (${name} store)`, async () => {
    await using t = await setup(make);
    const jobs = await t.enqueue(3);
    const outcomes: string[] = [];
    const worker = new ModelWorker({
      ...t.deps,
      onRun: (_, o) => outcomes.push(o),
    }).start();
    await drive(t, worker, () => outcomes.length, 3);
    assert.deepEqual(outcomes, ["done", "done", "done"]);
    const ended = await Promise.all(jobs.map((j) => getJob(t.kv, j.id)));
    for (let i = 0; i < 3; i++) {
      assert.equal(ended[i]!.finishedAt! - ended[i]!.startedAt!, MODEL_MS);
      if (i > 0) {
        assert.equal(
          ended[i]!.startedAt,
          ended[i - 1]!.finishedAt,
          "no idle gap",
        );
      }
    }
    assert.deepEqual(t.inputs, jobs.map((j) => j.id), "each job's own image");
    assert.equal(t.encoder.maxRunning, 1);
    for (const job of jobs) {
      // The videos are in place, the image is gone (the model is done with it).
      for (const kind of ["video", "fragments", "cenc"] as const) {
        const file = await t.store.open(job.id, kind);
        assert.ok(file && file.size > 0, `${kind} of ${job.id}`);
        file.close();
      }
      assert.equal(await t.store.open(job.id, "image"), null);
    }
    const partial = (await Array.fromAsync(t.store.entries()))
      .filter((e) => e.kind === "partial");
    assert.deepEqual(partial, [], "no workspace left behind");
  });

  Deno.test(`a storm of doorbells and duplicate queue messages runs the job once (${name} store)`, async () => {
    await using t = await setup(make);
    const [job] = await t.enqueue(1);
    const outcomes: string[] = [];
    const worker = new ModelWorker({
      ...t.deps,
      onRun: (_, o) => outcomes.push(o),
    }).start();
    for (let i = 0; i < 300; i++) worker.ring();
    for (let i = 0; i < 5; i++) await t.kv.enqueue({ id: job.id });
    t.kv.listenQueue(() => void worker.ring());
    await drive(t, worker, () => outcomes.length, 1);
    assert.deepEqual(outcomes, ["done"]);
    assert.equal(t.encoder.calls.length, 1);
  });

  Deno.test(`an encoder failure fails the job with its reason and the next job starts (${name} store)`, async () => {
    await using t = await setup(make);
    const [bad, good] = await t.enqueue(2);
    t.encoder.fail = new EncodeError(
      "encode_failed",
      "The video could not be made from this image.",
    );
    const outcomes: string[] = [];
    const worker = new ModelWorker({
      ...t.deps,
      onRun: (_, o) => {
        outcomes.push(o);
        t.encoder.fail = null;
      },
    }).start();
    await drive(t, worker, () => outcomes.length, 2);
    assert.deepEqual(outcomes, ["failed", "done"]);
    const failed = (await getJob(t.kv, bad.id))!;
    assert.deepEqual(failed.error, {
      code: "encode_failed",
      message: "The video could not be made from this image.",
    });
    assert.equal((await getJob(t.kv, good.id))!.startedAt, failed.finishedAt);
  });

  Deno.test(`cancelling the running job stops it within a tick, kills its encoder, frees the slot (${name} store)`, async () => {
    await using t = await setup(make);
    const [first, second] = await t.enqueue(2);
    t.encoder.hold();
    const outcomes: string[] = [];
    const worker = new ModelWorker({
      ...t.deps,
      onRun: (_, o) => outcomes.push(o),
    }).start();
    await t.clock.untilSleeping(1);
    t.clock.wakeNext(); // 200 ms into the first job
    await t.clock.untilSleeping(1);
    const cancelledAt = t.clock.now();
    await cancelJob(t.kv, first.id, cancelledAt, 3_600_000);
    t.encoder.release();
    await drive(t, worker, () => outcomes.length, 2);
    assert.deepEqual(outcomes, ["cancelled", "done"]);
    const next = (await getJob(t.kv, second.id))!;
    assert.ok(
      next.startedAt! - cancelledAt <= 200,
      `next started ${next.startedAt! - cancelledAt} ms after the cancel`,
    );
    assert.equal((await getJob(t.kv, first.id))!.status, "cancelled");
  });

  Deno.test(`stop() hands the running job back to the queue without counting the attempt (${name} store)`, async () => {
    await using t = await setup(make);
    const [job] = await t.enqueue(1);
    const worker = new ModelWorker(t.deps).start();
    await t.clock.untilSleeping(1);
    t.clock.wakeNext();
    await t.clock.untilSleeping(1);
    await worker.stop();
    const back = (await getJob(t.kv, job.id))!;
    assert.deepEqual([back.status, back.attempts, back.startedAt], [
      "queued",
      0,
      null,
    ]);
    assert.equal((await t.kv.get(keys.lease())).value, null);
    assert.equal((await t.kv.get(keys.depth())).value, 1);
    // Its image stays for the next run; the half-made outputs go.
    const left = await Array.fromAsync(t.store.entries());
    assert.deepEqual(left.map((e) => [e.kind, e.id]), [["image", job.id]]);
  });

  Deno.test(`a KV error in the loop is logged and the loop goes on; the job still runs (${name} store)`, async () => {
    await using t = await setup(make);
    const [job] = await t.enqueue(1);
    let failures = 2;
    const flaky = new Proxy(t.kv, {
      get(target, prop) {
        if (prop === "get" && failures > 0) {
          failures--;
          return () => Promise.reject(new Error("database is locked"));
        }
        const value = Reflect.get(target, prop, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const log = memoryLogger();
    const outcomes: string[] = [];
    const worker = new ModelWorker({
      ...t.deps,
      kv: flaky,
      log,
      onRun: (_, o) => outcomes.push(o),
    }).start();
    await drive(t, worker, () => outcomes.length, 1);
    assert.deepEqual(outcomes, ["done"]);
    const errors = log.records().filter((r) => r.level === "error");
    assert.equal(errors.length, 2);
    assert.ok(errors.every((r) => r.error === "Error: database is locked"));
    assert.equal((await getJob(t.kv, job.id))!.status, "done");
  });
}
