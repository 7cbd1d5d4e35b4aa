/**
 * Logs (LOG_FORMAT=json, `log.ts`), captured in process through an injected
 * sink: one line per request with its fields, and one line per job
 * transition with the job's id, across a whole job.
 */
import assert from "node:assert/strict";
import { memoryLogger } from "../log.ts";
import { EncodeError } from "../media/clip.ts";
import { runToEnd, startApp } from "./_app.ts";
import { FakeClock, FakeEncoder } from "./_fakes.ts";
import { type ApiJobLike, Client, fixture, startServer } from "./_server.ts";

type LogRecord = Record<string, unknown>;

async function start(encoder = new FakeEncoder()) {
  const clock = new FakeClock(Date.now());
  // Lines are stamped on the fake clock: when in the job's run each came.
  const log = memoryLogger({
    format: "json",
    role: "all",
    now: () => clock.now(),
  });
  const app = await startApp({}, { clock, encoder, log });
  const requests = () => log.records().filter((r) => r.msg === "request");
  const transitions = (id: string) =>
    log.records().filter((r) =>
      String(r.msg).startsWith("job.") && r.job === id
    );
  return { app, clock, log, requests, transitions };
}

Deno.test("logs: one JSON line per request with method, path, status, ms and the job it names; never the query", async () => {
  const { app, log, requests } = await start();
  await using _ = app;
  const client = app.client();
  const last = (n: number) => {
    const lines = requests();
    assert.equal(lines.length, n, "one line per request");
    return lines.at(-1)!;
  };
  await (await client.fetch("/healthz")).body?.cancel();
  const first = last(1);
  assert.deepEqual(
    Object.keys(first).sort(),
    ["level", "method", "ms", "msg", "path", "pid", "role", "status", "ts"],
  );
  assert.equal(first.method, "GET");
  assert.equal(first.path, "/healthz");
  assert.equal(first.status, 200);
  assert.equal(typeof first.ms, "number");
  assert.ok(!Number.isNaN(Date.parse(String(first.ts))));

  const up = await client.upload(await fixture("rgb.png"));
  const id = (up.body as unknown as ApiJobLike).id;
  assert.deepEqual(
    { ...await last(2), ts: 0, ms: 0, pid: 0 },
    {
      ts: 0,
      level: "info",
      role: "all",
      pid: 0,
      msg: "request",
      method: "POST",
      path: "/api/jobs",
      status: 202,
      ms: 0,
      job: id,
    },
  );

  await client.json(`/api/jobs/${id}`);
  assert.equal((await last(3)).job, id);

  const secret = "sig=TOPSECRET";
  await (await client.fetch(`/media/${id}?exp=1&${secret}`)).body?.cancel();
  const media = last(4);
  assert.equal(media.path, `/media/${id}`);
  assert.equal(media.job, id);
  assert.equal(media.status, 403);

  await (await client.fetch("/no/such/page")).body?.cancel();
  const missing = last(5);
  assert.equal(missing.status, 404);
  assert.equal(missing.job, undefined);
  assert.ok(!log.lines.some((l) => l.includes("TOPSECRET")));
});

Deno.test("logs: a whole job's transitions, once each, with its id: queued, started on a slot, progress by quarters, done", async () => {
  const { app, clock, transitions } = await start();
  await using _ = app;
  const client = app.client();
  const up = await client.upload(await fixture("rgb.png"));
  const id = (up.body as unknown as ApiJobLike).id;
  assert.equal((await runToEnd(client, clock, id)).status, "done");
  const all = transitions(id);
  // Queued is logged by the route once its commit is back, which a worker
  // woken by that commit may beat: it is there once, the rest in order.
  assert.equal(all.filter((r) => r.msg === "job.queued").length, 1);
  const lines = all.filter((r) => r.msg !== "job.queued");
  assert.deepEqual(lines.map((r) => r.msg), [
    "job.started",
    "job.progress",
    "job.progress",
    "job.progress",
    "job.done",
  ]);
  assert.deepEqual(
    lines.filter((r) => r.msg === "job.progress").map((r) => r.progress),
    [25, 50, 75],
  );
  const started = lines[0];
  // Each quarter is logged once the run has got that far, not before.
  const at = (r: LogRecord) => Date.parse(String(r.ts));
  for (const r of lines.filter((r) => r.msg === "job.progress")) {
    assert.ok(
      at(r) - at(started) >= (Number(r.progress) / 100) * 1000,
      `${r.progress} % logged ${at(r) - at(started)} ms into a 1000 ms run`,
    );
  }
  assert.equal(started.slot, app.service.worker!.slots[0].id);
  assert.equal(started.attempt, 1);
  assert.equal(typeof lines.at(-1)!.bytes, "number");
  for (const r of all) {
    assert.equal(r.role, "all");
    assert.equal(typeof r.ts, "string");
    assert.equal(r.pid, Deno.pid);
  }
});

Deno.test("logs: a failed job says its error code; a cancelled one what it was", async () => {
  const encoder = new FakeEncoder();
  encoder.fail = new EncodeError("encode_failed", "It broke.");
  encoder.hold(); // the first job stays running while the second is cancelled
  const { app, clock, transitions } = await start(encoder);
  await using _ = app;
  const client = app.client();
  const upload = async () =>
    ((await client.upload(await fixture("rgb.png")))
      .body as unknown as ApiJobLike)
      .id;
  const failing = await upload();
  // Jobs made in the same millisecond have no order between them (the fake
  // clock stands still): the second comes a millisecond later.
  clock.advance(1);
  const waiting = await upload();
  const cancel = await client.json(`/api/jobs/${waiting}`, {
    method: "DELETE",
  });
  assert.equal(cancel.status, 200);
  assert.deepEqual(
    transitions(waiting).map((r) => [r.msg, r.was]),
    [["job.queued", undefined], ["job.cancelled", "queued"]],
  );
  encoder.release();
  assert.equal((await runToEnd(client, clock, failing)).status, "failed");
  const failed = transitions(failing).at(-1)!;
  assert.equal(failed.msg, "job.failed");
  assert.equal(failed.code, "encode_failed");
});

Deno.test("logs: LOG_FORMAT=json, one web and one worker process: every line is JSON, and one job is followed through both by its id", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "img2vid-logs-" });
  const env = { MODEL_DURATION_MS: "1000", LOG_FORMAT: "json" };
  await using web = await startServer(
    { ...env, ROLE: "web" },
    dataDir,
    /listening on (http:\/\/[^/"\s]+)/,
  );
  await using worker = await startServer(
    { ...env, ROLE: "worker" },
    dataDir,
    /worker running/,
  );
  const client = new Client(web.url);
  const up = await client.upload(await fixture("rgb.png"));
  const id = (up.body as unknown as ApiJobLike).id;
  await client.events(id, (j) => j.status === "done");
  // A graceful stop: every line is out before the process ends.
  assert.equal((await worker.stop()).code, 0);
  assert.equal((await web.stop()).code, 0);

  const parse = (output: string) =>
    output.split("\n").filter((l) => l !== "").map((l) =>
      JSON.parse(l) as LogRecord
    );
  const webLines = parse(web.output());
  const workerLines = parse(worker.output());
  assert.ok(webLines.every((r) => r.role === "web"));
  assert.ok(workerLines.every((r) => r.role === "worker"));
  assert.notEqual(webLines[0].pid, workerLines[0].pid);
  const of = (lines: LogRecord[]) =>
    lines.filter((r) => r.job === id).map((r) => r.msg);
  assert.deepEqual(
    of(webLines).slice(0, 2),
    ["job.queued", "request"],
    "the upload: its transition, then its request line",
  );
  // Progress is logged at the ticks that see it pass a quarter; a loaded
  // machine may see the run end before its last quarter is ticked.
  const mine = workerLines.filter((r) => r.job === id);
  assert.equal(mine[0].msg, "job.started");
  assert.equal(mine.at(-1)!.msg, "job.done");
  const quarters = mine.slice(1, -1).map((r) => [r.msg, r.progress]);
  assert.deepEqual(
    quarters,
    [25, 50, 75].slice(0, quarters.length).map((p) => ["job.progress", p]),
  );
  await Deno.remove(dataDir, { recursive: true });
});
