import assert from "node:assert/strict";
import { queuedJob } from "../tests/_fakes.ts";
import { createJob } from "./jobs.ts";
import { QueueView, SharedRead } from "./view.ts";

/** A read whose answers the test gives, one per started read, in order. */
function controlledReads() {
  const started: PromiseWithResolvers<number>[] = [];
  const shared = new SharedRead(() => {
    const read = Promise.withResolvers<number>();
    started.push(read);
    return read.promise;
  });
  return { shared, started };
}

/** Lets pending callbacks run until `count` reads have started (bounded). */
async function startedReads(started: unknown[], count: number) {
  for (let i = 0; i < 100 && started.length < count; i++) {
    await Promise.resolve();
  }
}

Deno.test("view: callers that ask while a read waits to start share one read", async () => {
  const { shared, started } = controlledReads();
  const first = shared.get();
  // Asked while the first read runs: one read after it, for all of them.
  const later = [shared.get(), shared.get(), shared.get()];
  assert.equal(started.length, 1);
  started[0].resolve(1);
  assert.equal(await first, 1);
  await startedReads(started, 2); // the queued read starts once the first settled
  assert.equal(started.length, 2);
  started[1].resolve(2);
  assert.deepEqual(await Promise.all(later), [2, 2, 2]);
  assert.equal(started.length, 2);
});

Deno.test("view: a caller never gets a read that began before it asked", async () => {
  const { shared, started } = controlledReads();
  const before = shared.get();
  const after = shared.get();
  started[0].resolve(1);
  await before;
  // `after` asked while read 1 ran, so it waits for read 2, not read 1.
  await startedReads(started, 2);
  started[1].resolve(2);
  assert.equal(await after, 2);
  // Nothing in flight: the next caller starts its own read at once.
  const alone = shared.get();
  assert.equal(started.length, 3);
  started[2].resolve(3);
  assert.equal(await alone, 3);
});

Deno.test("view: a failed read fails its callers only; the next read is fresh", async () => {
  const { shared, started } = controlledReads();
  const failing = shared.get();
  started[0].reject(new Error("kv down"));
  await assert.rejects(failing, /kv down/);
  const next = shared.get();
  started[1].resolve(7);
  assert.equal(await next, 7);
});

Deno.test("view: states asked at once after their commits each show their own job", async () => {
  using kv = await Deno.openKv(":memory:");
  const view = new QueueView(kv);
  await view.state(); // the process's copy of the line exists
  const limits = {
    maxQueue: 100,
    maxWaitingPerSession: 100,
    maxWaitingPerClient: 100,
    maxDataBytes: 1e9,
  };
  const jobs = Array.from(
    { length: 8 },
    (_, i) => queuedJob(1000 + i, `s${i}`),
  );
  let committed = 0;
  // Each commits, then asks for the line, all at once: some share reads.
  const seen = await Promise.all(jobs.map(async (job) => {
    assert.equal((await createJob(kv, job, limits)).ok, true);
    const before = ++committed;
    const state = await view.state();
    return {
      before,
      depth: state.depth,
      position: state.positions.get(job.id),
    };
  }));
  for (const { before, depth, position } of seen) {
    assert.ok(
      depth >= before,
      `a state read before its caller asked (${depth} < ${before})`,
    );
    assert.ok(position !== undefined && position >= 1);
  }
  assert.equal((await view.state()).depth, jobs.length);
});

Deno.test("view: a state asked after a commit is not served by a read begun before it", async () => {
  using real = await Deno.openKv(":memory:");
  // getMany starts at once but answers only when the gate opens: the read
  // stays in flight while a job is committed.
  let gate = Promise.withResolvers<void>();
  const kv = new Proxy(real, {
    get(target, name) {
      const value = Reflect.get(target, name, target);
      if (name !== "getMany") {
        return typeof value === "function" ? value.bind(target) : value;
      }
      return async (...args: Parameters<Deno.Kv["getMany"]>) => {
        const answer = await target.getMany(...args);
        await gate.promise;
        return answer;
      };
    },
  });
  const view = new QueueView(kv);
  gate.resolve();
  await view.state(); // the process's copy of the line exists
  gate = Promise.withResolvers<void>();
  const older = view.state();
  const job = queuedJob(1000);
  const created = await createJob(real, job, {
    maxQueue: 100,
    maxWaitingPerSession: 100,
    maxWaitingPerClient: 100,
    maxDataBytes: 1e9,
  });
  assert.equal(created.ok, true);
  const after = view.state();
  gate.resolve();
  assert.equal((await older).depth, 0);
  const state = await after;
  assert.equal(state.depth, 1);
  assert.equal(state.positions.get(job.id), 1);
});
