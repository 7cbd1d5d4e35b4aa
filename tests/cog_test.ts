/**
 * `MODEL=cog` (API.md "Models"): the Cog adapter driven directly against the
 * fake Cog server (`fake_cog.ts`), its webhooks received by the app's real
 * route (the app in process, behind a socket so the fake can reach it),
 * with a `:memory:` KV shared by adapters that stand for worker processes.
 */
import assert from "node:assert/strict";
import { newJobId } from "../queue/ids.ts";
import { type ModelError, SlotBusy } from "../queue/models/adapter.ts";
import { CogAdapter } from "../queue/models/cog.ts";
import { beginCogPrediction, readCogState } from "../queue/models/cog_state.ts";
import { cogWebhookUrl } from "../routes/webhooks.ts";
import {
  BOUND_MS,
  cogHarness as harness,
  type Harness,
  IMAGE,
} from "./_cog.ts";
import type { FakeCog } from "./fake_cog.ts";
/** `p` settled within the failure bound. */
function bounded<T>(p: Promise<T>, what = "the run"): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${what} did not end`)),
        BOUND_MS,
      );
    }),
  ]).finally(() => clearTimeout(timer));
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await bounded(p);
  } catch (e) {
    return e;
  }
  throw new Error("the run did not fail");
}

/** The ModelError a run failed with. */
async function modelError(p: Promise<unknown>): Promise<ModelError> {
  const e = await rejection(p);
  assert.equal((e as Error).name, "ModelError", String(e));
  return e as ModelError;
}

Deno.test("cog: a job is one async PUT with the image and MODEL_INPUTS; progress from tqdm logs; the data: video is the run's output", async () => {
  await using h = await harness();
  const [fake] = h.fakes;
  fake.video = new TextEncoder().encode("a video from cog");
  const run = h.run();
  const done = h.adapter().run(h.adapter().slots[0], run);
  await fake.until(() => fake.current?.status === "processing");
  const input = fake.current!.input;
  assert.equal(input.frames_per_second, 6);
  assert.equal(input.video_length, "14_frames_with_svd");
  const image = await Deno.readFile(IMAGE);
  assert.equal(
    input.input_image,
    `data:image/png;base64,${btoa(String.fromCharCode(...image))}`,
  );
  assert.equal(await fake.progress(21, 50), 200);
  await bounded(run.untilProgress(42), "progress 42");
  assert.equal(await fake.progress(50, 50), 200);
  await bounded(run.untilProgress(100), "progress 100");
  assert.equal(await fake.succeed(), 200);
  assert.equal(await bounded(done), "video");
  assert.equal(await Deno.readTextFile(run.output), "a video from cog");
  assert.equal(fake.started.get(run.job.id), 1);
  assert.ok(await h.adapter().healthy(h.adapter().slots[0]), "slot free");
});

Deno.test("cog: an http: output, and a list whose last item is the video, are fetched", async () => {
  for (const output of ["http", "list"] as const) {
    await using h = await harness(1, { output });
    const [fake] = h.fakes;
    fake.video = new TextEncoder().encode(`video by ${output}`);
    const run = h.run();
    const done = h.adapter().run(h.adapter().slots[0], run);
    await fake.until(() => fake.busy);
    await fake.succeed();
    assert.equal(await bounded(done), "video");
    assert.equal(await Deno.readTextFile(run.output), `video by ${output}`);
  }
});

Deno.test("cog: two slots (two servers) run two jobs at once", async () => {
  await using h = await harness(2);
  const adapter = h.adapter();
  const [a, b] = [h.run(), h.run()];
  const runs = [
    adapter.run(adapter.slots[0], a),
    adapter.run(adapter.slots[1], b),
  ];
  await Promise.all(h.fakes.map((f) => f.until(() => f.busy)));
  assert.equal(h.fakes[0].current!.id, a.job.id);
  assert.equal(h.fakes[1].current!.id, b.job.id);
  await Promise.all(h.fakes.map((f) => f.succeed()));
  assert.deepEqual(await bounded(Promise.all(runs)), ["video", "video"]);
});

Deno.test("cog: cancel posts /cancel, waits for Cog's canceled, frees the slot and rejects with the abort's reason", async () => {
  await using h = await harness();
  const [fake] = h.fakes;
  const adapter = h.adapter();
  const run = h.run();
  const done = adapter.run(adapter.slots[0], run);
  await fake.until(() => fake.current?.status === "processing");
  const reason = new Error("cancelled by its owner");
  run.abort(reason);
  assert.equal(await rejection(done), reason);
  assert.equal(fake.cancels.get(run.job.id), 1);
  assert.equal(fake.current!.status, "canceled");
  assert.equal(await readCogState(h.kv, run.job.id), null, "forgotten");
  assert.ok(await adapter.healthy(adapter.slots[0]), "the slot takes work");
});

Deno.test("cog: 409 (busy with another prediction) is SlotBusy: the job waits, nothing is recorded, nothing fails", async () => {
  await using h = await harness();
  const [fake] = h.fakes;
  // Someone else's prediction holds the server.
  const other = await fetch(`${fake.url}/predictions/someone-else`, {
    method: "PUT",
    headers: { prefer: "respond-async" },
    body: JSON.stringify({ input: {} }),
  });
  assert.equal(other.status, 202);
  await other.body?.cancel();
  const adapter = h.adapter();
  assert.equal(
    await adapter.healthy(adapter.slots[0]),
    false,
    "BUSY, not ours",
  );
  const run = h.run();
  const e = await rejection(adapter.run(adapter.slots[0], run));
  assert.ok(e instanceof SlotBusy, String(e));
  assert.equal(await readCogState(h.kv, run.job.id), null);
  assert.equal(fake.started.get(run.job.id), undefined);
  // Once free, the same job runs.
  await fake.succeed();
  const again = adapter.run(adapter.slots[0], run);
  await fake.until(() => fake.busy);
  await fake.succeed();
  assert.equal(await bounded(again), "video");
});

Deno.test("cog: a slot takes work only when /health-check says READY, or BUSY with our own prediction", async () => {
  await using h = await harness();
  const [fake] = h.fakes;
  const adapter = h.adapter({ healthTimeoutMs: 1_000 });
  const slot = adapter.slots[0];
  for (const status of ["STARTING", "SETUP_FAILED"] as const) {
    fake.health = status;
    assert.equal(await adapter.healthy(slot), false, status);
  }
  fake.health = null;
  assert.equal(await adapter.healthy(slot), true, "READY");
  const run = h.run();
  const done = adapter.run(slot, run);
  await fake.until(() => fake.busy);
  assert.equal(await adapter.healthy(slot), true, "BUSY with ours");
  await fake.succeed();
  await bounded(done);
  const gone = new CogAdapter({
    kv: h.kv,
    urls: ["http://127.0.0.1:9"], // discard port: nothing listens
    input: "image",
    inputs: {},
    webhookUrl: () => Promise.resolve(""),
    timings: { healthTimeoutMs: 1_000 },
  });
  assert.equal(await gone.healthy(gone.slots[0]), false, "unreachable");
  // Given a job all the same (a race), the job waits rather than fails.
  const e = await rejection(gone.run(gone.slots[0], h.run()));
  assert.ok(e instanceof SlotBusy, String(e));
});

/**
 * A worker that dies mid-prediction, as kill -9 leaves it: its run stops
 * where it is (here: its progress report throws), nothing is cancelled or
 * forgotten.
 */
async function dieMidPrediction(h: Harness, fake: FakeCog): Promise<string> {
  const run = h.run();
  run.progress = () => {
    throw new Error("killed");
  };
  const first = h.adapter();
  const dead = first.run(first.slots[0], run).catch(() => {});
  await fake.until(() => fake.current?.status === "processing");
  await fake.progress(1, 10);
  await bounded(dead);
  assert.ok(fake.busy, "the prediction runs on");
  return run.job.id;
}

Deno.test("cog: a restarted worker re-attaches to the running prediction: one prediction for the job", async () => {
  await using h = await harness();
  const [fake] = h.fakes;
  const id = await dieMidPrediction(h, fake);
  // Re-attached by the PUT, not by waiting for a result that may never come.
  const restarted = h.adapter({ lostGraceMs: 0 });
  const run = h.run(id);
  const done = restarted.run(restarted.slots[0], run);
  await fake.until(() => fake.puts.get(id) === 2);
  assert.equal(await fake.progress(7, 10), 200);
  await bounded(run.untilProgress(70), "progress after re-attach");
  await fake.succeed();
  assert.equal(await bounded(done), "video");
  assert.equal(fake.started.get(id), 1);
});

Deno.test("cog: a restarted worker takes the recorded result of a prediction that ended meanwhile: no second prediction", async () => {
  await using h = await harness();
  const [fake] = h.fakes;
  fake.video = new TextEncoder().encode("made while no worker watched");
  const id = await dieMidPrediction(h, fake);
  await fake.succeed();
  const restarted = h.adapter();
  const run = h.run(id);
  assert.equal(await bounded(restarted.run(restarted.slots[0], run)), "video");
  assert.equal(
    await Deno.readTextFile(run.output),
    "made while no worker watched",
  );
  assert.equal(fake.started.get(id), 1);
});

Deno.test("cog: a restarted worker fails the job whose prediction Cog lost (it never runs it twice)", async () => {
  await using h = await harness();
  const [fake] = h.fakes;
  const id = await dieMidPrediction(h, fake);
  fake.forget(); // Cog restarted: READY, and no word of the prediction
  const restarted = h.adapter({ lostGraceMs: 0 });
  const e = await modelError(restarted.run(restarted.slots[0], h.run(id)));
  assert.equal(e.code, "model_failed");
  assert.match(e.message, /no longer runs this job's prediction/);
  assert.equal(fake.started.get(id), 1);
});

Deno.test("cog: a restarted worker whose PUT never reached Cog sends it", async () => {
  await using h = await harness();
  const [fake] = h.fakes;
  const run = h.run();
  // Died between recording the prediction and sending it.
  await beginCogPrediction(h.kv, run.job.id, fake.url, Date.now());
  const adapter = h.adapter();
  const done = adapter.run(adapter.slots[0], run);
  await fake.until(() => fake.busy);
  await fake.succeed();
  assert.equal(await bounded(done), "video");
  assert.equal(fake.started.get(run.job.id), 1);
});

Deno.test("cog: the webhook route answers 404 to a wrong secret, another job's secret, an unknown job and a malformed id", async () => {
  await using h = await harness();
  const [fake] = h.fakes;
  const adapter = h.adapter();
  const run = h.run();
  const done = adapter.run(adapter.slots[0], run);
  // Once Cog's own `start` arrived, the state is "processing".
  await fake.until(() => fake.deliveries.length === 1);
  const id = run.job.id;
  const other = newJobId(Date.now());
  const own = new URL(await cogWebhookUrl(h.key, h.base, id));
  const post = (url: string) =>
    fetch(url, {
      method: "POST",
      // A stranger's request: no cookie, another origin.
      headers: {
        "content-type": "application/json",
        origin: "https://evil.example",
      },
      body: JSON.stringify({ id, status: "failed", error: "forged" }),
    });
  const cases: [string, string][] = [
    ["no secret", `${h.base}/api/webhooks/cog/${id}`],
    [
      "wrong secret",
      `${h.base}/api/webhooks/cog/${id}?secret=${"A".repeat(43)}`,
    ],
    [
      "another job's secret",
      `${h.base}/api/webhooks/cog/${id}?${
        new URL(await cogWebhookUrl(h.key, h.base, other)).search.slice(1)
      }`,
    ],
    ["unknown job", await cogWebhookUrl(h.key, h.base, other)],
    ["malformed id", `${h.base}/api/webhooks/cog/..%2Fx${own.search}`],
  ];
  for (const [what, url] of cases) {
    const res = await post(url);
    await res.body?.cancel();
    assert.equal(res.status, 404, what);
  }
  assert.equal(
    (await readCogState(h.kv, id))!.status,
    "processing",
    "untouched",
  );
  // The job's own secret is accepted, even cross-origin and without a cookie.
  const res = await fetch(own, {
    method: "POST",
    headers: { origin: "https://cog.internal" },
    body: JSON.stringify({
      id,
      status: "processing",
      logs: "\r 50%|█████     | 5/10",
    }),
  });
  await res.body?.cancel();
  assert.equal(res.status, 200);
  await bounded(run.untilProgress(50));
  await fake.succeed();
  await bounded(done);
});

Deno.test("cog: a failed prediction fails the job with Cog's error", async () => {
  await using h = await harness();
  const [fake] = h.fakes;
  const adapter = h.adapter();
  const run = h.run();
  const done = adapter.run(adapter.slots[0], run);
  await fake.until(() => fake.busy);
  await fake.fail("CUDA out of memory");
  const e = await modelError(done);
  assert.equal(e.code, "model_failed");
  assert.equal(e.message, "CUDA out of memory");
});

Deno.test("cog: nonsense from Cog fails that job with a clear error", async (t) => {
  const cases = [
    ["put_500", "model_failed", /HTTP 500/],
    ["put_invalid_json", "model_failed", /not JSON/],
    ["webhook_invalid_json", "model_failed", /webhook that is not JSON/],
    ["output_not_url", "model_output", /not a video URL: "\/tmp/],
    ["huge_output", "model_output", /larger than 100 MB/],
    ["huge_http_output", "model_output", /larger than 100 MB/],
  ] as const;
  for (const [mode, code, message] of cases) {
    await t.step(mode, async () => {
      await using h = await harness();
      const [fake] = h.fakes;
      fake.mode = mode;
      const adapter = h.adapter();
      const run = h.run();
      const failed = modelError(adapter.run(adapter.slots[0], run));
      // The other modes go wrong at the PUT, or at the first webhook.
      if (/output/.test(mode)) {
        await fake.until(() => fake.busy);
        await fake.succeed();
      }
      const e = await failed;
      assert.equal(e.code, code);
      assert.match(e.message, message);
      if (mode === "put_invalid_json" || mode === "webhook_invalid_json") {
        assert.equal(fake.cancels.get(run.job.id), 1, "not left running");
        assert.equal(fake.busy, false);
      }
    });
  }
});

Deno.test("cog: a webhook that never comes: the worker's timeout aborts the run, which cancels the prediction", async () => {
  await using h = await harness();
  const [fake] = h.fakes;
  fake.mode = "no_webhook";
  const adapter = h.adapter({ cancelWaitMs: 200 });
  const run = h.run();
  const done = adapter.run(adapter.slots[0], run);
  await fake.until(() => fake.busy);
  const timeout = new DOMException("MODEL_TIMEOUT_MS", "TimeoutError");
  run.abort(timeout);
  assert.equal(await rejection(done), timeout);
  assert.equal(fake.cancels.get(run.job.id), 1);
  assert.equal(fake.busy, false);
});
