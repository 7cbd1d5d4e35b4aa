/**
 * ROLE=web and ROLE=worker as separate processes on one KV file and one
 * DATA_DIR: the web process serves and follows jobs by polling (kv.watch does
 * not see another process's writes), the workers share the model slot through
 * the lease and never overlap.
 */
import assert from "node:assert/strict";
import { type ApiJobLike, Client, fixture, startServer } from "./_server.ts";

Deno.test("one web process and two worker processes: every job done once, one at a time, live progress", async () => {
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
  const { events } = await client.events(ids[0], (j) => j.status === "done");
  assert.ok(
    events.filter((e) => e.job.status === "processing").length >= 3,
    "progress is seen live by the web process",
  );
  for (const id of ids.slice(1)) {
    await client.events(id, (j) => j.status === "done");
  }

  const { body } = await client.json<{ jobs: ApiJobLike[] }>("/api/jobs");
  assert.deepEqual(body.jobs.map((j) => j.status), [
    "done",
    "done",
    "done",
    "done",
  ]);
  const spans = body.jobs.map((
    j,
  ) => [Date.parse(j.startedAt!), Date.parse(j.finishedAt!)]).sort((a, b) =>
    a[0] - b[0]
  );
  for (let i = 1; i < spans.length; i++) {
    assert.ok(spans[i][0] >= spans[i - 1][1], "no two jobs overlap");
  }
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
