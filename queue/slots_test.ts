import assert from "node:assert/strict";
import { MemoryStore } from "../media/memory_store.ts";
import {
  FakeClock,
  FakeEncoder,
  FakeModel,
  ModelLog,
  queuedJob,
} from "../tests/_fakes.ts";
import { retryingWhenBusy } from "./_kv.ts";
import { cancelJob, createJob, getJob, type JobRecord } from "./jobs.ts";
import { keys } from "./keys.ts";
import {
  claimNext,
  finishJob,
  type Lease,
  reclaimExpired,
  RUN_TIMES_KEPT,
} from "./lease.ts";
import { ModelError, type SlotInfo } from "./models/adapter.ts";
import type { RunOutcome } from "./model.ts";
import {
  beat,
  listSlots,
  type SlotView,
  totalUtilisation,
  utilisationOf,
} from "./slots.ts";
import { queuedEtaMs, QueueView, slotFreeTimes, toApiJob } from "./view.ts";
import { ModelWorker } from "./worker.ts";

const LEASE_MS = 5_000;
const HOUR = 3_600_000;
const slot = (id: string, kind: SlotInfo["kind"] = "cog"): SlotInfo => ({
  id,
  kind,
});

async function setup() {
  const kv = await Deno.openKv(":memory:");
  const clock = new FakeClock();
  const store = new MemoryStore(() => clock.now());
  const encoder = new FakeEncoder();
  /** Each job's endings, as the workers report them. */
  const ends = new Map<string, RunOutcome[]>();
  const waiters: (() => void)[] = [];
  const onRun = (id: string, outcome: RunOutcome) => {
    ends.set(id, [...(ends.get(id) ?? []), outcome]);
    for (const w of waiters.splice(0)) w();
  };
  const worker = (
    model: FakeModel,
    owner: string,
    extra: { modelTimeoutMs?: number } = {},
  ) =>
    new ModelWorker({
      kv,
      clock,
      store,
      encoder,
      adapter: model,
      owner,
      modelMs: 30_000,
      leaseMs: LEASE_MS,
      tickMs: 200,
      idleMs: 2_000,
      retentionMs: HOUR,
      onRun,
      ...extra,
    });
  const enqueue = async (n: number) => {
    const jobs: JobRecord[] = [];
    for (let i = 0; i < n; i++) {
      const job = queuedJob(clock.now() - 1000 + i);
      const incoming = await store.receive();
      await incoming.write(new TextEncoder().encode(job.id));
      await incoming.keep(job.id);
      await createJob(kv, job, 100);
      jobs.push(job);
    }
    return jobs;
  };
  return {
    kv,
    clock,
    store,
    encoder,
    ends,
    worker,
    enqueue,
    /** Resolves once `id` has ended `n` times. */
    async ended(id: string, n = 1) {
      while ((ends.get(id)?.length ?? 0) < n) {
        await new Promise<void>((r) => waiters.push(r));
      }
      return ends.get(id)!;
    },
    status: async (id: string) => (await getJob(kv, id))!.status,
    [Symbol.dispose]: () => kv.close(),
  };
}

Deno.test("two slots run two jobs at once, never more; a freed slot takes the next job at once", async () => {
  using t = await setup();
  const model = new FakeModel([slot("gpu-1"), slot("gpu-2")]);
  const [a, b, c] = await t.enqueue(3);
  const worker = t.worker(model, "w1").start();
  await model.log.untilRunning(a.id);
  await model.log.untilRunning(b.id);
  assert.deepEqual(
    [await t.status(a.id), await t.status(b.id), await t.status(c.id)],
    ["processing", "processing", "queued"],
  );
  // Either slot may take either job: one each.
  const slots = await listSlots(t.kv, t.clock.now());
  assert.deepEqual(slots.map((s) => [s.id, s.state]), [
    ["gpu-1", "busy"],
    ["gpu-2", "busy"],
  ]);
  assert.deepEqual(slots.map((s) => s.jobId).sort(), [a.id, b.id].sort());
  const slotOfA = slots.find((s) => s.jobId === a.id)!.id;
  model.finish(a.id);
  assert.deepEqual(await t.ended(a.id), ["done"]);
  await model.log.untilRunning(c.id);
  assert.deepEqual([...model.log.bySlot.get(slotOfA)!], [c.id]);
  model.finish(b.id);
  model.finish(c.id);
  await t.ended(b.id);
  await t.ended(c.id);
  await worker.stop();
  assert.equal(model.log.maxRunning, 2);
  assert.equal(model.log.maxPerSlot, 1);
  for (const j of [a, b, c]) {
    assert.equal(await t.status(j.id), "done");
    assert.equal(model.log.runs.get(j.id), 1);
  }
  // The media step got each model's own video.
  assert.equal(t.encoder.transcodes.length, 3);
  assert.deepEqual(
    (await listSlots(t.kv, t.clock.now())).map((s) => s.state),
    ["idle", "idle"],
  );
});

Deno.test("an unhealthy slot claims nothing and is shown unhealthy; the healthy one runs the line", async () => {
  using t = await setup();
  const model = new FakeModel([slot("gpu-1"), slot("gpu-2")]);
  model.unhealthy.add("gpu-1");
  const [a, b] = await t.enqueue(2);
  const worker = t.worker(model, "w1").start();
  await model.log.untilRunning(a.id);
  model.finish(a.id);
  await model.log.untilRunning(b.id);
  assert.deepEqual([...model.log.bySlot.get("gpu-2")!], [b.id]);
  const slots = await listSlots(t.kv, t.clock.now());
  assert.deepEqual(slots.map((s) => [s.id, s.state]), [
    ["gpu-1", "unhealthy"],
    ["gpu-2", "busy"],
  ]);
  model.finish(b.id);
  await t.ended(b.id);
  await worker.stop();
  assert.equal(model.log.bySlot.get("gpu-1")?.size ?? 0, 0);
});

Deno.test("a dead worker's slot lease expires: its job goes back once and runs once, on another worker", async () => {
  using t = await setup();
  const [job] = await t.enqueue(1);
  // A worker claimed it on its own slot and died.
  await claimNext(t.kv, {
    owner: "dead",
    slot: "simulated:dead",
    now: t.clock.now(),
    leaseMs: LEASE_MS,
    retentionMs: HOUR,
  });
  const log = new ModelLog();
  const m1 = new FakeModel([slot("gpu-1")], log);
  const m2 = new FakeModel([slot("gpu-2")], log);
  const w1 = t.worker(m1, "w1").start();
  const w2 = t.worker(m2, "w2").start();
  await t.clock.untilSleeping(2);
  assert.equal(log.running, 0, "nothing runs while the lease lives");
  t.clock.advance(LEASE_MS + 1);
  await log.untilRunning(job.id);
  const running = (await getJob(t.kv, job.id))!;
  assert.equal(running.attempts, 2, "the cut run counts");
  assert.deepEqual(log.jobs(), [job.id]);
  [m1, m2].find((m) => m.has(job.id))!.finish(job.id);
  await t.ended(job.id);
  await Promise.all([w1.stop(), w2.stop()]);
  assert.equal(log.runs.get(job.id), 1);
  assert.equal(await t.status(job.id), "done");
});

Deno.test("many workers (two processes' KV handles) noticing one expired lease at once put its job back once", async () => {
  const dir = await Deno.makeTempDir({ prefix: "img2vid-reclaim-" });
  try {
    // As the service opens it: a locked file is tried again.
    using a = retryingWhenBusy(await Deno.openKv(`${dir}/kv.sqlite3`));
    using b = retryingWhenBusy(await Deno.openKv(`${dir}/kv.sqlite3`));
    const job = queuedJob(1_000);
    await createJob(a, job, 10);
    await claimNext(a, {
      owner: "dead",
      slot: "simulated:dead",
      now: 2_000,
      leaseMs: LEASE_MS,
      retentionMs: HOUR,
    });
    const later = 2_000 + LEASE_MS + 1;
    const returned = await Promise.all(
      Array.from(
        { length: 8 },
        (_, i) => reclaimExpired(i % 2 ? a : b, later, HOUR),
      ),
    );
    assert.equal(returned.reduce((x, y) => x + y, 0), 1);
    assert.equal((await a.get(keys.depth())).value, 1);
    const back = (await getJob(a, job.id))!;
    assert.deepEqual([back.status, back.attempts], ["queued", 1]);
    assert.equal(
      (await Array.fromAsync(a.list({ prefix: keys.pendingAll() }))).length,
      1,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("on a two-slot worker: a cancel stops its run only, a timeout fails its job with model_timeout, a stop hands both running jobs back", async () => {
  using t = await setup();
  const model = new FakeModel([slot("gpu-1"), slot("gpu-2")]);
  const [a, b, c, d] = await t.enqueue(4);
  const start = t.clock.now();
  const worker = t.worker(model, "w1", { modelTimeoutMs: 10_000 }).start();
  await model.log.untilRunning(a.id);
  await model.log.untilRunning(b.id);
  await t.clock.untilSleeping(2); // both runs wait for their next tick

  await cancelJob(t.kv, a.id, t.clock.now(), HOUR);
  t.clock.advance(200); // the next tick sees it
  assert.deepEqual(await t.ended(a.id), ["cancelled"]);
  assert.equal(await t.status(a.id), "cancelled");
  await model.log.untilRunning(c.id); // the freed slot takes the next job
  assert.equal(await t.status(b.id), "processing", "the other run goes on");

  await t.clock.untilSleeping(2);
  t.clock.advance(start + 10_000 - t.clock.now()); // b has run 10 s, c less
  assert.deepEqual(await t.ended(b.id), ["failed"]);
  const failed = (await getJob(t.kv, b.id))!;
  assert.equal(failed.error?.code, "model_timeout");
  assert.match(failed.error!.message, /10 s/);
  await model.log.untilRunning(d.id);
  assert.equal(await t.status(c.id), "processing");

  await t.clock.untilSleeping(2);
  await worker.stop();
  for (const j of [c, d]) {
    const back = (await getJob(t.kv, j.id))!;
    assert.deepEqual([back.status, back.attempts], ["queued", 0]);
  }
  assert.equal((await t.kv.get(keys.depth())).value, 2);
  assert.deepEqual(
    await Array.fromAsync(t.kv.list({ prefix: keys.slotAll() })),
    [],
    "both slots freed",
  );
  assert.equal(model.log.maxRunning, 2);
  assert.deepEqual(
    [a, b, c, d].map((j) =>
      (model.log.aborted.get(j.id) as { why?: string } | undefined)?.why
    ),
    ["cancelled", "timeout", "stopped", "stopped"],
  );
});

Deno.test("a model's failure fails its job with the model's code and sentence, frees the slot, and the loop goes on", async () => {
  using t = await setup();
  const model = new FakeModel([slot("gpu-1")]);
  const [a, b] = await t.enqueue(2);
  const worker = t.worker(model, "w1").start();
  await model.log.untilRunning(a.id);
  model.fail(a.id, new ModelError("model_failed", "CUDA out of memory"));
  assert.deepEqual(await t.ended(a.id), ["failed"]);
  assert.deepEqual((await getJob(t.kv, a.id))!.error, {
    code: "model_failed",
    message: "CUDA out of memory",
  });
  await model.log.untilRunning(b.id);
  model.finish(b.id);
  await t.ended(b.id);
  await worker.stop();
  assert.equal(await t.status(b.id), "done");
});

Deno.test("two workers offering one slot (one Cog URL) never run two jobs on it at once", async () => {
  using t = await setup();
  const log = new ModelLog();
  const shared = slot("http://gpu-1:5000");
  const models = [new FakeModel([shared], log), new FakeModel([shared], log)];
  const jobs = await t.enqueue(3);
  const workers = models.map((m, i) => t.worker(m, `w${i}`).start());
  for (const job of jobs) {
    await log.untilRunning(job.id);
    // Both workers had every chance to claim meanwhile.
    await t.clock.untilSleeping(2);
    for (const w of workers) w.ring();
    await t.clock.untilSleeping(2);
    assert.equal(log.running, 1);
    models.find((m) => m.has(job.id))!.finish(job.id);
    await t.ended(job.id);
  }
  await Promise.all(workers.map((w) => w.stop()));
  assert.equal(log.maxRunning, 1);
  assert.deepEqual(jobs.map((j) => log.runs.get(j.id)), [1, 1, 1]);
});

/** The ETA's schedule by brute force: each job on the earliest-free slot. */
function bruteEta(free: number[], average: number, position: number): number {
  const slots = [...free];
  let done = 0;
  for (let p = 1; p <= position; p++) {
    slots.sort((x, y) => x - y);
    done = slots[0] + average;
    slots[0] = done;
  }
  return done;
}

Deno.test("ETA with 3 slots and varying run times: the average of the recent runs, when each slot frees, each later job on the earliest-free slot", async () => {
  using kv = await Deno.openKv(":memory:");
  const t0 = 1_000_000;
  // Three runs of 20, 40 and 30 s recorded by the commits that ended them.
  for (const [i, ms] of [20_000, 40_000, 30_000].entries()) {
    const job = queuedJob(t0 + i);
    await createJob(kv, job, 100);
    const started = t0 + 100_000 * i;
    const claimed = await claimNext(kv, {
      owner: "w",
      slot: "s",
      kind: "cog",
      now: started,
      leaseMs: LEASE_MS,
      retentionMs: HOUR,
    });
    assert.ok(
      await finishJob(kv, {
        owner: "w",
        jobId: claimed!.id,
        slot: "s",
        now: started + ms,
        retentionMs: HOUR,
        result: { video: { bytes: 1, stored: 1 } },
      }),
    );
  }
  assert.deepEqual((await kv.get(keys.runTimes("cog"))).value, [
    20_000,
    40_000,
    30_000,
  ]);
  // Three slots run jobs started 5, 12 and 28 s ago; seven wait.
  const now = t0 + 1_000_000;
  const running: JobRecord[] = [];
  for (const [i, ago] of [5_000, 12_000, 28_000].entries()) {
    await createJob(kv, queuedJob(now - 60_000 + i), 100);
    running.push(
      (await claimNext(kv, {
        owner: "w",
        slot: `s${i}`,
        kind: "cog",
        now: now - ago,
        leaseMs: 60_000,
        retentionMs: HOUR,
      }))!,
    );
  }
  const waiting: JobRecord[] = [];
  for (let i = 0; i < 7; i++) {
    const job = queuedJob(now - 50_000 + i);
    await createJob(kv, job, 100);
    waiting.push(job);
  }
  const view = new QueueView(kv, {
    kind: "cog",
    clock: { now: () => now, sleep: () => Promise.resolve() },
  });
  const state = await view.state();
  assert.equal(state.liveSlots, 3);
  assert.equal(state.averageMs, 30_000);
  const free = slotFreeTimes(state, 30_000, now);
  assert.deepEqual(free, [2_000, 18_000, 25_000]);
  const api = async (job: JobRecord) =>
    toApiJob((await getJob(kv, job.id))!, {
      queue: state,
      progress: null,
      now,
      modelMs: 99_000, // not used: there is a history
      video: null,
    });
  for (const [i, job] of waiting.entries()) {
    const view = await api(job);
    assert.equal(view.position, i + 1);
    assert.equal(
      view.etaSeconds,
      Math.ceil(bruteEta(free, 30_000, i + 1) / 1000),
      `position ${i + 1}`,
    );
  }
  assert.equal((await api(running[2])).etaSeconds, 2, "30 s − 28 s");
  // An idle live slot (a heartbeat) takes the next job at once.
  await beat(kv, slot("s3", "cog"), {
    owner: "w2",
    healthy: true,
    up: now,
    since: now,
    now,
    ttlMs: 10_000,
  });
  const more = await view.state();
  assert.equal(more.liveSlots, 4);
  assert.equal(
    queuedEtaMs(1, slotFreeTimes(more, 30_000, now), 30_000),
    30_000,
  );
  // Many positions: the closed form matches the schedule.
  for (let p = 1; p <= 40; p++) {
    assert.equal(queuedEtaMs(p, free, 30_000), bruteEta(free, 30_000, p));
  }
  // Kept short: the last RUN_TIMES_KEPT runs.
  assert.equal(RUN_TIMES_KEPT, 20);
});

Deno.test("utilisation: busy time over wall time in the window, a running job included, a young slot over its own age", () => {
  const now = 100_000;
  assert.equal(utilisationOf([], null, null, now, 60_000), 0);
  // Busy 10 s of the last 60 s, and running for the last 20 s.
  assert.equal(
    utilisationOf([[50_000, 60_000]], { startedAt: 80_000 }, 0, now, 60_000),
    0.5,
  );
  // Up 10 s, busy all of it.
  assert.equal(
    utilisationOf(
      [[90_000, 95_000]],
      { startedAt: 95_000 },
      90_000,
      now,
      60_000,
    ),
    1,
  );
  // Spans older than the window do not count.
  assert.equal(utilisationOf([[0, 30_000]], null, 0, now, 60_000), 0);
});

Deno.test("listSlots: a busy slot's span joins its usage when it ends; a slot whose heartbeat expired is not listed", async () => {
  using kv = await Deno.openKv(":memory:");
  const now = 1_000_000;
  await beat(kv, slot("a"), {
    owner: "w",
    healthy: true,
    up: now - 60_000,
    since: now - 60_000,
    now: now - 60_000,
    ttlMs: 120_000,
  });
  await beat(kv, slot("gone"), {
    owner: "w",
    healthy: true,
    up: now - 60_000,
    since: now - 60_000,
    now: now - 60_000,
    ttlMs: 1_000,
  });
  const job = queuedJob(now - 60_000);
  await createJob(kv, job, 10);
  await claimNext(kv, {
    owner: "w",
    slot: "a",
    kind: "cog",
    now: now - 30_000,
    leaseMs: 60_000,
    retentionMs: HOUR,
  });
  const busy = await listSlots(kv, now);
  assert.deepEqual(busy.map((s) => [s.id, s.state, s.jobId, s.since]), [
    ["a", "busy", job.id, now - 30_000],
  ]);
  assert.equal(busy[0].utilisation, 0.5);
  await finishJob(kv, {
    owner: "w",
    jobId: job.id,
    slot: "a",
    now: now - 15_000,
    retentionMs: HOUR,
    result: { video: { bytes: 1, stored: 1 } },
  });
  const idle = await listSlots(kv, now);
  assert.deepEqual(idle.map((s) => [s.state, s.jobId, s.since]), [
    ["idle", null, now - 15_000],
  ]);
  assert.equal(idle[0].utilisation, 0.25);
  const lease = await kv.get<Lease>(keys.slot("a"));
  assert.equal(lease.value, null);
});

Deno.test("/metrics shows each slot: busy while it runs a job, healthy, and its utilisation", async () => {
  const { startApp } = await import("../tests/_app.ts");
  const { fixture } = await import("../tests/_server.ts");
  await using app = await startApp({ MODEL_DURATION_MS: "300" });
  const client = app.client();
  const slotLabel = `slot="simulated:${app.service.workerId}",kind="simulated"`;
  const metric = async (name: string) => {
    const text = await (await client.fetch("/metrics")).text();
    const line = text.split("\n").find((l) =>
      l.startsWith(`${name}{${slotLabel}}`)
    );
    return line === undefined ? undefined : Number(line.split(" ").at(-1));
  };
  const { body } = await client.upload(await fixture("rgb.png"));
  const id = (body as { id: string }).id;
  await client.events(id, (j) => j.status === "processing");
  assert.equal(await metric("img2vid_slot_busy"), 1);
  assert.equal(await metric("img2vid_slot_healthy"), 1);
  await client.events(id, (j) => j.status === "done");
  assert.equal(await metric("img2vid_slot_busy"), 0);
  const used = await metric("img2vid_slot_utilisation");
  assert.ok(used! > 0 && used! <= 1, `utilisation ${used}`);
});

Deno.test("totalUtilisation: the listed slots' busy time over their wall time, a young slot weighing its age", () => {
  const slot = (utilisation: number, wallMs: number): SlotView => ({
    id: "s",
    kind: "simulated",
    state: "idle",
    jobId: null,
    since: 0,
    utilisation,
    wallMs,
  });
  assert.equal(totalUtilisation([]), 0, "no live slot");
  assert.equal(totalUtilisation([slot(1, 600_000), slot(0, 600_000)]), 0.5);
  // Busy all its one minute, beside a slot idle for ten: 1/11, not 1/2.
  assert.equal(totalUtilisation([slot(1, 60_000), slot(0, 600_000)]), 1 / 11);
  assert.equal(totalUtilisation([slot(0.25, 0)]), 0, "no wall time yet");
});

Deno.test("listSlots: each slot's wall time is the window, or its age when younger", async () => {
  using kv = await Deno.openKv(":memory:");
  const now = 10 * 60_000 + 5_000;
  await beat(kv, { id: "old", kind: "simulated" }, {
    owner: "w",
    healthy: true,
    up: 0,
    since: 0,
    now,
    ttlMs: 60_000,
  });
  await beat(kv, { id: "young", kind: "simulated" }, {
    owner: "w",
    healthy: true,
    up: now - 30_000,
    since: now - 30_000,
    now,
    ttlMs: 60_000,
  });
  const slots = await listSlots(kv, now, 60_000);
  assert.deepEqual(slots.map((s) => [s.id, s.wallMs]), [
    ["old", 60_000],
    ["young", 30_000],
  ]);
});
