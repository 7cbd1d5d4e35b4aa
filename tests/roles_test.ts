/**
 * ROLE=web and ROLE=worker as separate processes on one KV file and one
 * DATA_DIR: the web process serves and follows jobs by polling (kv.watch does
 * not see another process's writes); each simulated worker is one model slot
 * with its own lease, so N workers run N jobs at once and never more, and a
 * killed worker's job is taken up by another.
 */
import assert from "node:assert/strict";
import type { JobRecord } from "../queue/jobs.ts";
import { keys } from "../queue/keys.ts";
import type { SlotUsage } from "../queue/lease.ts";
import { listSlots } from "../queue/slots.ts";
import {
  type ApiJobLike,
  Client,
  fixture,
  startServer,
  type TestServer,
} from "./_server.ts";

/** The most spans that overlap at any instant. */
function maxOverlap(spans: [number, number][]): number {
  const edges = spans.flatMap(([s, e]) => [[s, 1], [e, -1]] as const)
    .sort((a, b) => a[0] - b[0] || a[1] - b[1]); // an end before a start at one instant
  let now = 0, max = 0;
  for (const [, d] of edges) max = Math.max(max, now += d);
  return max;
}

const spansOf = (jobs: ApiJobLike[]): [number, number][] =>
  jobs.map((j) => [Date.parse(j.startedAt!), Date.parse(j.finishedAt!)]);

Deno.test("one web process and two worker processes: every job done once, two at a time at most, live progress", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "img2vid-roles-" });
  const env = { MODEL_DURATION_MS: "1000", LEASE_MS: "1000" };
  await using web = await startServer({ ...env, ROLE: "web" }, dataDir);
  await using w1 = await startServer(
    { ...env, ROLE: "worker" },
    dataDir,
    /worker running/,
  );
  await using w2 = await startServer(
    { ...env, ROLE: "worker" },
    dataDir,
    /worker running/,
  );
  const client = new Client(web.url);
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) {
    ids.push(
      ((await client.upload(await fixture("rgb.png"))).body as { id: string })
        .id,
    );
  }
  // The last job waits for a slot, so its stream is open before it starts
  // (idle workers start the first ones within their depth poll).
  const { events } = await client.events(ids[3], (j) => j.status === "done");
  assert.ok(
    events.filter((e) => e.job.status === "processing").length >= 3,
    "progress is seen live by the web process",
  );
  for (const id of ids.slice(0, 3)) {
    await client.events(id, (j) => j.status === "done");
  }

  const { body } = await client.json<{ jobs: ApiJobLike[] }>("/api/jobs");
  assert.deepEqual(body.jobs.map((j) => j.status), [
    "done",
    "done",
    "done",
    "done",
  ]);
  assert.ok(
    maxOverlap(spansOf(body.jobs)) <= 2,
    "two worker processes, two slots: never more than two jobs at once",
  );
  const video = await client.fetch(body.jobs[0].video!.url);
  assert.equal(video.status, 200, "the web process serves what a worker made");
  await video.body?.cancel();
  assert.doesNotMatch(
    w1.output() + w2.output(),
    /listening on/,
    "workers serve nothing",
  );
  for (const p of [web, w1, w2]) await p.stop("SIGKILL");
  await Deno.remove(dataDir, { recursive: true });
});

Deno.test("three worker processes and one web process: three jobs at once and never more, each job once, a worker killed mid-job has its job done once by another", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "img2vid-slots-" });
  const env = {
    MODEL_DURATION_MS: "2000",
    LEASE_MS: "1000",
    UPLOADS_PER_MINUTE: "100",
  };
  await using web = await startServer({ ...env, ROLE: "web" }, dataDir);
  const workers: TestServer[] = [];
  for (let i = 0; i < 3; i++) {
    workers.push(
      await startServer({ ...env, ROLE: "worker" }, dataDir, /worker running/),
    );
  }
  const idOf = (w: TestServer) => /id ([0-9a-f-]{36})/.exec(w.output())![1];
  using kv = await Deno.openKv(`${dataDir}/kv.sqlite3`);
  const client = new Client(web.url);
  const ids: string[] = [];
  for (let i = 0; i < 8; i++) {
    ids.push(
      ((await client.upload(await fixture("rgb.png"))).body as { id: string })
        .id,
    );
  }
  // Each time a job starts, look at the slots: once three are busy, kill
  // the worker whose job started last (the most of its run still ahead).
  let busy: Awaited<ReturnType<typeof listSlots>> = [];
  for (const id of ids) {
    await client.events(id, (j) => j.status !== "queued");
    busy = (await listSlots(kv, Date.now())).filter((s) => s.state === "busy");
    if (busy.length === 3) break;
  }
  assert.equal(busy.length, 3, "three slots were busy at once");
  const latest = busy.sort((a, b) => b.since - a.since)[0];
  const victim = workers.find((w) => latest.id === `simulated:${idOf(w)}`)!;
  const cut = latest.jobId!;
  await victim.stop("SIGKILL");

  for (const id of ids) {
    await client.events(
      id,
      (j) => j.status === "done" || j.status === "failed",
    );
  }
  const { body } = await client.json<{ jobs: ApiJobLike[] }>("/api/jobs");
  assert.deepEqual(body.jobs.map((j) => j.status), ids.map(() => "done"));
  const records = await Promise.all(
    ids.map(async (id) => (await kv.get<JobRecord>(keys.job(id))).value!),
  );
  assert.deepEqual(
    records.map((r) => [r.id, r.attempts]),
    ids.map((id) => [id, id === cut ? 2 : 1]),
    "each job ran once, the cut one once more",
  );
  // Every slot's busy spans, the killed slot's cut run included.
  const usage = await Array.fromAsync(
    kv.list<SlotUsage>({ prefix: ["slot_usage"] }),
  );
  const spans = usage.flatMap((u) => u.value.spans);
  assert.equal(spans.length, ids.length + 1);
  assert.equal(maxOverlap(spans), 3, "three at once, never more");
  for (const u of usage) {
    assert.equal(
      maxOverlap(u.value.spans),
      1,
      `one job at a time on ${String(u.key[1])}`,
    );
  }
  for (const w of workers) await w.stop("SIGKILL");
  await web.stop("SIGKILL");
  await Deno.remove(dataDir, { recursive: true });
});
