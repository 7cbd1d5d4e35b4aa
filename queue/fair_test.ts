/**
 * The fair order (API.md, "Order: fair, not first come first served") at the
 * queue layer: who runs next, every position, and the waiting caps.
 */
import assert from "node:assert/strict";
import { queuedJob } from "../tests/_fakes.ts";
import {
  cancelJob,
  createJob,
  type JobRecord,
  migrateLegacyLine,
  waitingCounts,
} from "./jobs.ts";
import { keys } from "./keys.ts";
import { claimNext, handBack, releaseLease } from "./lease.ts";
import { QueueView } from "./view.ts";

const HOUR = 3_600_000;
const LIMITS = {
  maxQueue: 1000,
  maxWaitingPerSession: 100,
  maxWaitingPerClient: 100,
};

/** Names jobs for readable assertions: "a1" is session a's first upload. */
class Line {
  names = new Map<string, string>();
  #t = 1_000;
  constructor(readonly kv: Deno.Kv) {}

  async upload(name: string, session: string, client: string) {
    const job = queuedJob(this.#t++, session, client);
    this.names.set(job.id, name);
    const res = await createJob(this.kv, job, LIMITS);
    assert.ok(res.ok, `${name} accepted`);
    return job;
  }

  /** The waiting jobs' names in the order the pending keys run. */
  async order(): Promise<string[]> {
    const out = [];
    for await (
      const e of this.kv.list<string>({ prefix: keys.pendingAll() })
    ) out.push(this.names.get(e.value)!);
    return out;
  }

  /** Each waiting job's position as a process's view computes it. */
  async positions(view = new QueueView(this.kv)): Promise<string[]> {
    const state = await view.state();
    return [...this.names].filter(([id]) => state.positions.get(id))
      .sort(([a], [b]) => state.positions.get(a)! - state.positions.get(b)!)
      .map(([, name]) => name);
  }

  /** Takes the next job; `free`: frees the slot again at once. */
  async claim(now = 10_000, free = false): Promise<string | undefined> {
    const job = await claimNext(this.kv, {
      owner: "w",
      now,
      leaseMs: 5_000,
      retentionMs: HOUR,
    });
    if (job && free) {
      await releaseLease(this.kv, { owner: "w", jobId: job.id });
    }
    return job ? this.names.get(job.id) : undefined;
  }
}

Deno.test("two sessions on one address take turns; each keeps its upload order", async () => {
  using kv = await Deno.openKv(":memory:");
  const line = new Line(kv);
  for (const n of ["a1", "a2", "a3"]) await line.upload(n, "a", "10.0.0.1");
  for (const n of ["b1", "b2"]) await line.upload(n, "b", "10.0.0.1");
  const expected = ["a1", "b1", "a2", "b2", "a3"];
  assert.deepEqual(await line.order(), expected);
  assert.deepEqual(await line.positions(), expected);
  const ran = [];
  for (let i = 0; i < 5; i++) ran.push(await line.claim(10_000, true));
  assert.deepEqual(ran, expected, "the worker runs them in that order");
});

Deno.test("two addresses take turns, whatever their sessions", async () => {
  using kv = await Deno.openKv(":memory:");
  const line = new Line(kv);
  for (const n of ["x1", "x2", "x3"]) await line.upload(n, "sx", "10.0.0.1");
  await line.upload("y1", "sy1", "10.0.0.2");
  await line.upload("y2", "sy2", "10.0.0.2");
  assert.deepEqual(await line.order(), ["x1", "y1", "x2", "y2", "x3"]);
});

Deno.test("a newcomer's first picture goes ahead of a 20-picture visitor's 2nd, and the visitor's positions grow by one", async () => {
  using kv = await Deno.openKv(":memory:");
  const line = new Line(kv);
  const pile = [];
  for (let i = 1; i <= 20; i++) {
    pile.push(await line.upload(`p${i}`, "piles", "10.0.0.1"));
  }
  assert.equal(await line.claim(), "p1"); // running; p2… wait
  const view = new QueueView(kv);
  const before = (await view.state()).positions.get(pile[1].id);
  assert.equal(before, 1);
  const first = await line.upload("n1", "newcomer", "10.0.0.2");
  const state = await view.state();
  assert.equal(state.positions.get(first.id), 2, "one job ahead: p2");
  assert.equal(state.positions.get(pile[1].id), 1);
  assert.equal(state.positions.get(pile[2].id), 3, "p3 moved back by one");
  assert.equal(state.positions.get(pile[19].id), 20);
  // A third visitor: one job of each of the two ahead, no more.
  const third = await line.upload("t1", "third", "10.0.0.3");
  assert.equal((await view.state()).positions.get(third.id), 3);
  assert.deepEqual((await line.order()).slice(0, 5), [
    "p2",
    "n1",
    "t1",
    "p3",
    "p4",
  ]);
});

Deno.test("a cancel closes the gap without reordering; a handed-back job and an expired lease's job keep their place", async () => {
  using kv = await Deno.openKv(":memory:");
  const line = new Line(kv);
  const jobs: Record<string, JobRecord> = {};
  for (const n of ["a1", "a2", "a3"]) {
    jobs[n] = await line.upload(n, "a", "10.0.0.1");
  }
  for (const n of ["b1", "b2"]) jobs[n] = await line.upload(n, "b", "10.0.0.1");
  jobs.c1 = await line.upload("c1", "c", "10.0.0.2");
  jobs.c2 = await line.upload("c2", "c", "10.0.0.2");
  const full = ["a1", "c1", "b1", "c2", "a2", "b2", "a3"];
  assert.deepEqual(await line.order(), full);

  assert.ok(await cancelJob(kv, jobs.b1.id, 9_000, HOUR));
  const afterCancel = full.filter((n) => n !== "b1");
  assert.deepEqual(await line.order(), afterCancel);

  const view = new QueueView(kv);
  assert.equal(await line.claim(10_000), "a1");
  assert.deepEqual(await line.positions(view), afterCancel.slice(1));
  await handBack(kv, { owner: "w", jobId: jobs.a1.id }, 11_000);
  assert.deepEqual(await line.order(), afterCancel, "handed back: first again");
  assert.deepEqual(await line.positions(view), afterCancel);

  // The worker dies: its lease runs out and the job goes back to its place.
  assert.equal(await line.claim(12_000), "a1");
  await line.upload("d1", "d", "10.0.0.3"); // arrives while a1 runs
  assert.equal(await line.claim(12_000 + 5_001), "a1", "back first, run again");
});

Deno.test("waiting caps are exact under concurrent creates, per session and per address, and free up when a job starts or is cancelled", async () => {
  using kv = await Deno.openKv(":memory:");
  const caps = {
    maxQueue: 1000,
    maxWaitingPerSession: 3,
    maxWaitingPerClient: 5,
  };
  const sJobs = Array.from(
    { length: 20 },
    (_, i) => queuedJob(1000 + i, "s", "10.0.0.1"),
  );
  const one = await Promise.all(sJobs.map((j) => createJob(kv, j, caps)));
  assert.equal(one.filter((r) => r.ok).length, 3);
  assert.ok(one.every((r) => r.ok || r.reason === "too_many_waiting"));
  const many = await Promise.all(
    Array.from(
      { length: 20 },
      (_, i) => createJob(kv, queuedJob(2000 + i, `t${i}`, "10.0.0.1"), caps),
    ),
  );
  assert.equal(many.filter((r) => r.ok).length, 2, "5 per address in all");
  assert.deepEqual(await waitingCounts(kv, "10.0.0.1", "s"), {
    session: 3,
    client: 5,
  });
  const other = await createJob(kv, queuedJob(3000, "u", "10.0.0.2"), caps);
  assert.ok(other.ok, "another address is not refused");

  const taken = await claimNext(kv, {
    owner: "w",
    now: 5000,
    leaseMs: 5000,
    retentionMs: HOUR,
  });
  assert.equal(taken?.session, "s");
  assert.deepEqual(await waitingCounts(kv, "10.0.0.1", "s"), {
    session: 2,
    client: 4,
  });
  const again = await createJob(kv, queuedJob(4000, "s", "10.0.0.1"), caps);
  assert.ok(again.ok, "a started job frees a place");
  const waitingOfS = sJobs.filter((j, i) => one[i].ok && j.id !== taken!.id);
  assert.ok(await cancelJob(kv, waitingOfS[0].id, 6000, HOUR));
  const counts = await waitingCounts(kv, "10.0.0.1", "s");
  assert.deepEqual(counts, { session: 2, client: 4 }, "a cancel frees a place");
});

Deno.test("every process's copy of the line agrees with KV, also when it fell behind the log", async () => {
  using kv = await Deno.openKv(":memory:");
  const line = new Line(kv);
  const early = new QueueView(kv);
  await early.state(); // listed once, now follows the log
  for (let i = 0; i < 30; i++) {
    await line.upload(`j${i}`, `s${i % 7}`, `10.0.0.${i % 3}`);
  }
  assert.equal(await line.claim(), "j0");
  const expected = await line.order();
  assert.deepEqual(await line.positions(early), expected);
  const late = new QueueView(kv);
  assert.deepEqual(await line.positions(late), expected);
  // The log entries expired: the next look lists the line again.
  for await (const e of kv.list({ prefix: keys.lineLogAll() })) {
    await kv.delete(e.key);
  }
  await line.upload("k", "s9", "10.0.0.9");
  assert.deepEqual(await line.positions(late), await line.order());
});

Deno.test("jobs queued before the fair order (no client, old keys) keep their order, ahead, after the migration at start", async () => {
  using kv = await Deno.openKv(":memory:");
  const line = new Line(kv);
  const old = [queuedJob(500, "o1"), queuedJob(600, "o2")].map((j) => {
    const { client: _, ...record } = j;
    return record as JobRecord;
  });
  for (const [i, j] of old.entries()) {
    line.names.set(j.id, `old${i + 1}`);
    await kv.atomic().set(keys.job(j.id), j)
      .set(["pending", j.createdAt, j.id], j.id)
      .set(keys.depth(), i + 1).commit();
  }
  assert.equal(await migrateLegacyLine(kv), 2);
  assert.equal(await migrateLegacyLine(kv), 0, "idempotent");
  await line.upload("n1", "n", "10.0.0.1");
  assert.deepEqual(await line.order(), ["old1", "old2", "n1"]);
  assert.deepEqual(await line.positions(), ["old1", "old2", "n1"]);
  assert.ok(await cancelJob(kv, old[1].id, 900, HOUR));
  assert.equal(await line.claim(1000, true), "old1");
  assert.equal(await line.claim(1000, true), "n1");
});
