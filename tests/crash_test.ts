/**
 * kill -9 of the real server at different moments, then a restart on the same
 * DATA_DIR: nothing accepted is lost, nothing runs twice at once, the cut job
 * starts again from 0, and the session still sees its jobs.
 */
import { cogKillMidPrediction } from "./_cog_crash.ts";
import assert from "node:assert/strict";
import { groupAlive, procStat } from "../queue/models/command.ts";
import { type ApiJobLike, Client, fixture, startServer } from "./_server.ts";

const ENV = { MODEL_DURATION_MS: "1500", LEASE_MS: "600" };

Deno.test("SIGKILL mid-job, several times at different progress points: every job finishes once, from 0 again", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "img2vid-crash-" });
  let server = await startServer(ENV, dataDir);
  const client = new Client(server.url);
  const ids: string[] = [];
  for (const name of ["rgb.png", "baseline.jpg", "lossy.webp"]) {
    const type = name.endsWith("png")
      ? "image/png"
      : name.endsWith("jpg")
      ? "image/jpeg"
      : "image/webp";
    ids.push(
      ((await client.upload(await fixture(name), name, type)).body as {
        id: string;
      }).id,
    );
  }
  // 85 %: the clip is written, the model not yet done (ticks every 200 ms of 1500).
  const rounds = [10, 40, 70, 85];
  const recoveries: number[] = [];
  for (const [round, point] of rounds.entries()) {
    // Kill the running job once it has passed `point` %.
    const running = ids[Math.min(round, ids.length - 1)];
    const seen = await client.events(
      running,
      (j) => j.status === "processing" && j.progress >= point,
    );
    const at = seen.events.at(-1)!.job;
    assert.equal(at.status, "processing");
    await server.stop("SIGKILL");
    const restartedAt = Date.now();
    server = await startServer(ENV, dataDir);
    client.base = server.url; // same cookie, new port
    // The cut job is seen again from the start: queued, or run anew (a new
    // start time, from which its progress counts). On a busy machine the
    // new run may be past the cut point by the time the stream connects.
    const anew = (j: ApiJobLike) =>
      j.status === "queued" || j.startedAt !== at.startedAt;
    const again = await client.events(running, anew);
    recoveries.push(Date.now() - restartedAt);
    assert.ok(
      again.events.some((e) => anew(e.job)),
      `job restarted (cut at ${at.progress} %)`,
    );
  }
  assert.equal(recoveries.length, rounds.length);
  console.log(
    `kill/restart rounds: ${recoveries.length}; recovery ms: ${
      recoveries.join(", ")
    }`,
  );

  for (const id of ids) {
    await client.events(
      id,
      (j) => j.status === "done" || j.status === "failed",
    );
  }
  const { body } = await client.json<{ jobs: ApiJobLike[] }>("/api/jobs");
  assert.deepEqual(body.jobs.map((j) => j.status), ["done", "done", "done"]);
  const spans = body.jobs.map((
    j,
  ) => [Date.parse(j.startedAt!), Date.parse(j.finishedAt!)]).sort((a, b) =>
    a[0] - b[0]
  );
  for (let i = 1; i < spans.length; i++) {
    assert.ok(spans[i][0] >= spans[i - 1][1], "no two jobs overlap");
  }
  for (const job of body.jobs) {
    const res = await client.fetch(job.video!.url, {
      headers: { "sec-fetch-dest": "video" },
    });
    assert.equal(res.status, 200);
    assert.ok((await res.arrayBuffer()).byteLength > 1000);
  }
  const leftovers = await Array.fromAsync(Deno.readDir(`${dataDir}/tmp`));
  assert.deepEqual(leftovers, []);
  await server.stop("SIGKILL");
  await Deno.remove(dataDir, { recursive: true });
});

Deno.test("SIGKILL while an upload streams in and while jobs wait: no half job, no leftover, waiting jobs kept", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "img2vid-crash-" });
  let server = await startServer(
    { ...ENV, MODEL_DURATION_MS: "60000" },
    dataDir,
  );
  const client = new Client(server.url);
  const kept: string[] = [];
  for (let i = 0; i < 2; i++) {
    kept.push(
      ((await client.upload(await fixture("rgb.png"))).body as { id: string })
        .id,
    );
  }

  // An upload that sends its first bytes and then waits: the server dies mid-body.
  let gotFirst!: () => void;
  const firstSent = new Promise<void>((r) => (gotFirst = r));
  const body = new ReadableStream<Uint8Array>({
    async pull(c) {
      c.enqueue((await fixture("rgb.png")).subarray(0, 500));
      gotFirst();
      await new Promise(() => {}); // never more
    },
  });
  // The server makes its temp file when the body starts to arrive.
  const watcher = Deno.watchFs(`${dataDir}/tmp`);
  const cut = client.fetch("/api/jobs", {
    method: "POST",
    body,
    headers: { "content-type": "image/png" },
  })
    .then(() => "answered", () => "cut");
  await firstSent;
  for await (const event of watcher) if (event.kind === "create") break;
  watcher.close();
  await server.stop("SIGKILL");
  assert.equal(await cut, "cut");

  server = await startServer({ ...ENV, MODEL_DURATION_MS: "60000" }, dataDir);
  client.base = server.url;
  const { body: list } = await client.json<{ jobs: ApiJobLike[] }>("/api/jobs");
  assert.deepEqual(
    list.jobs.map((j) => j.id).sort(),
    [...kept].sort(),
    "the session and its two jobs survive",
  );
  assert.deepEqual(
    await Array.fromAsync(Deno.readDir(`${dataDir}/tmp`)),
    [],
    "the cut upload's temp file is swept",
  );
  await server.stop("SIGKILL");
  await Deno.remove(dataDir, { recursive: true });
});

Deno.test(
  "MODEL=cog: SIGKILL mid-prediction, restart: the job finishes on its one prediction",
  cogKillMidPrediction,
);

Deno.test("MODEL=command: SIGKILL of the worker mid-run, restart: the orphaned program's process group is ended before the job runs again, and the job is done once", async () => {
  const notes = await Deno.makeTempDir({ prefix: "img2vid-command-crash-" });
  const dataDir = await Deno.makeTempDir({ prefix: "img2vid-crash-" });
  const env = {
    MODEL: "command",
    MODEL_COMMAND: `sh ${
      new URL("./fixtures/fake_model.sh", import.meta.url).pathname
    }`,
    // The job's first run hangs; a later one writes the video at once.
    FAKE_MODE: "once_slow",
    FAKE_DIR: notes,
    FAKE_VIDEO: new URL("./fixtures/model.avi", import.meta.url).pathname,
    LEASE_MS: "600",
  };
  let server = await startServer(env, dataDir);
  let group = 0;
  try {
    const client = new Client(server.url);
    const { id } = (await client.upload(await fixture("rgb.png"))).body as {
      id: string;
    };
    // The program said "progress: 10" after noting its grandchild.
    await client.events(id, (j) => j.progress >= 10);
    const grandchild = Number(await Deno.readTextFile(`${notes}/grandchild`));
    group = procStat(grandchild)!.group;
    assert.ok(group > 0 && group !== procStat(Deno.pid)!.group);

    await server.stop("SIGKILL");
    assert.ok(groupAlive(group), "the program runs on without its worker");

    server = await startServer(env, dataDir);
    const again = new Client(server.url);
    again.cookie = client.cookie;
    const done = await again.events(
      id,
      (j) => j.status === "done" || j.status === "failed",
    );
    const job = done.events.at(-1)!.job;
    assert.equal(job.status, "done", JSON.stringify(job.error));
    assert.equal(groupAlive(group), false, "the orphaned group was ended");
    await assert.rejects(
      Deno.stat(`${notes}/orphan_at_rerun`),
      Deno.errors.NotFound,
      "ended before the job ran again",
    );
    // Gone, or a zombie that init has yet to reap.
    assert.ok(["Z", "X", undefined].includes(procStat(grandchild)?.state));
    const finished = (await Deno.readTextFile(`${notes}/finished`)).trim();
    assert.equal(finished.split("\n").length, 1, "one run wrote the video");
    assert.deepEqual(
      await Array.fromAsync(Deno.readDir(`${dataDir}/command-groups`)),
      [],
      "nothing left written down",
    );
  } finally {
    await server.stop("SIGKILL");
    if (group > 0) {
      try {
        Deno.kill(-group, "SIGKILL"); // a failed run's leftovers
      } catch { /* gone, as it should be */ }
    }
    await Deno.remove(dataDir, { recursive: true });
    await Deno.remove(notes, { recursive: true });
  }
});
