/**
 * A visitor's own data (API.md, `DELETE /api/jobs/{id}` and
 * `POST /api/jobs/{id}/retry`), in process: a finished job is deleted with
 * its files and its counted bytes, then 404 everywhere; a failed or
 * cancelled job keeps its image and can be tried again once, through the
 * same limits as an upload; the races that can be provoked are.
 */
import assert from "node:assert/strict";
import { EncodeError } from "../media/clip.ts";
import type { Store } from "../media/store.ts";
import { dataBytes } from "../queue/data_bytes.ts";
import { startApp, type TestApp } from "./_app.ts";
import { type ApiJobLike, type Client, fixture } from "./_server.ts";
import { STORES } from "./_stores.ts";

/** The files of job `id` under the app's DATA_DIR. */
const filesOf = async (app: TestApp, id: string) => {
  const found: string[] = [];
  for (const dir of ["uploads", "videos"]) {
    for await (const e of Deno.readDir(`${app.dataDir}/${dir}`)) {
      if (e.name.startsWith(id)) found.push(`${dir}/${e.name}`);
    }
  }
  return found.sort();
};

/** What the page's player sends for a segment (`fetch`, same origin). */
const FETCH = { "sec-fetch-dest": "empty", "sec-fetch-site": "same-origin" };

const upload = async (client: Client) => {
  const res = await client.upload(await fixture("rgb.png"));
  assert.equal(res.status, 202);
  return res.body as unknown as ApiJobLike;
};

const del = (client: Client, id: string) =>
  client.fetch(`/api/jobs/${id}`, { method: "DELETE" });

const retry = (client: Client, id: string) =>
  client.json<ApiJobLike & { error: { code: string } }>(
    `/api/jobs/${id}/retry`,
    { method: "POST" },
  );

const status = async (res: Promise<Response>) => {
  const r = await res;
  await r.body?.cancel();
  return r.status;
};

Deno.test("DELETE of a done job: 204, files and counted bytes gone, then 404 everywhere", async () => {
  await using app = await startApp({ MODEL_DURATION_MS: "100" });
  const owner = app.client();
  const { id } = await upload(owner);
  await owner.events(id, (j) => j.status === "done");
  const done = (await owner.json<ApiJobLike>(`/api/jobs/${id}`)).body;
  assert.ok((await filesOf(app, id)).length >= 2, "the video copies");
  assert.ok(await dataBytes(app.service.kv) > 0);

  // A playback granted before the delete: its segment address dies with it.
  const grant = await owner.json<{ segments: string[] }>(
    `/api/jobs/${id}/playback`,
    { method: "POST" },
  );
  assert.equal(grant.status, 201);

  const res = await del(owner, id);
  assert.equal(res.status, 204);
  assert.equal(await res.text(), "");
  assert.deepEqual(await filesOf(app, id), []);
  assert.equal(await dataBytes(app.service.kv), 0);

  for (
    const [path, init] of [
      [`/api/jobs/${id}`, {}],
      [`/api/jobs/${id}/events`, {}],
      [`/api/jobs/${id}/playback`, { method: "POST" }],
      [`/api/jobs/${id}`, { method: "DELETE" }],
      [`/api/jobs/${id}/retry`, { method: "POST" }],
      [done.video!.url, {}],
      [grant.body.segments[0], { headers: FETCH }],
    ] as const
  ) {
    const r = await owner.json<{ error: { code: string } }>(path, init);
    assert.deepEqual([r.status, r.body.error.code], [404, "not_found"], path);
  }
  assert.equal((await owner.fetch(`/jobs/${id}`)).status, 404, "its page");
  const list = (await owner.json<{ jobs: ApiJobLike[] }>("/api/jobs")).body;
  assert.deepEqual(list.jobs, []);
});

Deno.test("a failed job keeps its image; DELETE removes it and gives its bytes back", async () => {
  await using app = await startApp({ MODEL_DURATION_MS: "100" });
  app.encoder.fail = new EncodeError("encode_failed", "no");
  const owner = app.client();
  const { id, image } = await upload(owner);
  await owner.events(id, (j) => j.status === "failed");
  assert.deepEqual(await filesOf(app, id), [`uploads/${id}`]);
  assert.equal(await dataBytes(app.service.kv), image.bytes);
  assert.equal(await status(del(owner, id)), 204);
  assert.deepEqual(await filesOf(app, id), []);
  assert.equal(await dataBytes(app.service.kv), 0);
  assert.equal(await status(owner.fetch(`/api/jobs/${id}`)), 404);
});

Deno.test("DELETE of a queued job cancels it (200) and keeps its image; a second DELETE deletes it (204)", async () => {
  await using app = await startApp({ MODEL_DURATION_MS: "60000" });
  const owner = app.client();
  const first = await upload(owner);
  const { id } = await upload(owner);
  const cancelled = await owner.json<ApiJobLike>(`/api/jobs/${id}`, {
    method: "DELETE",
  });
  assert.deepEqual([cancelled.status, cancelled.body.status], [
    200,
    "cancelled",
  ]);
  assert.deepEqual(await filesOf(app, id), [`uploads/${id}`]);
  assert.equal(await dataBytes(app.service.kv), 2 * first.image.bytes);
  assert.equal(await status(del(owner, id)), 204);
  assert.deepEqual(await filesOf(app, id), []);
  assert.equal(await dataBytes(app.service.kv), first.image.bytes);
});

Deno.test("retry: a cancelled job comes back as a new job at the end of the line; the two share no file", async () => {
  await using app = await startApp({ MODEL_DURATION_MS: "60000" });
  const owner = app.client();
  const running = await upload(owner);
  await owner.events(running.id, (j) => j.status === "processing");
  const cancelled = await upload(owner);
  const behind = await upload(owner);
  assert.equal(await status(del(owner, cancelled.id)), 200);

  const res = await retry(owner, cancelled.id);
  assert.equal(res.status, 202);
  const again = res.body;
  assert.notEqual(again.id, cancelled.id);
  assert.equal(res.headers.get("location"), `/api/jobs/${again.id}`);
  assert.equal(again.status, "queued");
  assert.equal(again.position, 2, "behind the job that was already waiting");
  assert.deepEqual(again.image, cancelled.image);
  const original = (await owner.json<ApiJobLike>(`/api/jobs/${cancelled.id}`))
    .body;
  assert.equal(original.status, "cancelled", "the original stays");
  const ids = (await owner.json<{ jobs: ApiJobLike[] }>("/api/jobs")).body
    .jobs.map((j) => j.id);
  assert.deepEqual(ids, [again.id, behind.id, cancelled.id, running.id]);
  assert.equal(await dataBytes(app.service.kv), 4 * cancelled.image.bytes);

  // Deleting the original leaves the new job's own copy whole.
  const copy = await Deno.readFile(`${app.dataDir}/uploads/${again.id}`);
  assert.equal(await status(del(owner, cancelled.id)), 204);
  assert.deepEqual(
    await Deno.readFile(`${app.dataDir}/uploads/${again.id}`),
    copy,
  );
  assert.equal(await dataBytes(app.service.kv), 3 * cancelled.image.bytes);
});

Deno.test("retry: 409 not_retryable unless failed or cancelled with the image kept; 404 for another session", async () => {
  await using app = await startApp({ MODEL_DURATION_MS: "60000" });
  const owner = app.client();
  const stranger = app.client();
  const running = await upload(owner);
  await owner.events(running.id, (j) => j.status === "processing");
  const queued = await upload(owner);
  for (const id of [running.id, queued.id]) {
    const r = await retry(owner, id);
    assert.deepEqual([r.status, r.body.error.code], [409, "not_retryable"]);
  }
  assert.equal(await status(del(owner, queued.id)), 200);
  const r = await retry(stranger, queued.id);
  assert.deepEqual([r.status, r.body.error.code], [404, "not_found"]);
  // Its image gone (as for jobs that ended before images were kept): 409.
  await Deno.remove(`${app.dataDir}/uploads/${queued.id}`);
  const gone = await retry(owner, queued.id);
  assert.deepEqual([gone.status, gone.body.error.code], [409, "not_retryable"]);
  const ids = (await owner.json<{ jobs: ApiJobLike[] }>("/api/jobs")).body
    .jobs.map((j) => j.id);
  assert.deepEqual(ids, [queued.id, running.id], "no job was made");
});

Deno.test("retry: two at once make one new job; the other gets 409 and leaves nothing", async () => {
  await using app = await startApp({ MODEL_DURATION_MS: "60000" });
  const owner = app.client();
  const running = await upload(owner);
  await owner.events(running.id, (j) => j.status === "processing");
  const { id, image } = await upload(owner);
  assert.equal(await status(del(owner, id)), 200);
  const both = await Promise.all([retry(owner, id), retry(owner, id)]);
  assert.deepEqual(both.map((r) => r.status).sort(), [202, 409]);
  assert.equal(
    both.find((r) => r.status === 409)!.body.error.code,
    "not_retryable",
  );
  const jobs = (await owner.json<{ jobs: ApiJobLike[] }>("/api/jobs")).body
    .jobs;
  assert.equal(jobs.length, 3);
  const images = [];
  for await (const e of Deno.readDir(`${app.dataDir}/uploads`)) {
    images.push(e.name);
  }
  assert.equal(images.length, 3, "the loser's copy was removed");
  assert.equal(await dataBytes(app.service.kv), 3 * image.bytes);
  // And a later retry of the same job too: one retry per job.
  const later = await retry(owner, id);
  assert.deepEqual([later.status, later.body.error.code], [
    409,
    "not_retryable",
  ]);
});

Deno.test("retry: the waiting caps apply as to an upload, and a refused retry leaves nothing", async () => {
  await using app = await startApp({
    MODEL_DURATION_MS: "60000",
    MAX_WAITING_PER_SESSION: "1",
  });
  const owner = app.client();
  const running = await upload(owner);
  await owner.events(running.id, (j) => j.status === "processing");
  const { id, image } = await upload(owner);
  assert.equal(await status(del(owner, id)), 200);
  const waiting = await upload(owner);
  const refused = await retry(owner, id);
  assert.deepEqual([refused.status, refused.body.error.code], [
    429,
    "too_many_waiting",
  ]);
  assert.ok(Number(refused.headers.get("retry-after")) >= 1);
  assert.equal(await dataBytes(app.service.kv), 3 * image.bytes);
  assert.equal(await status(del(owner, waiting.id)), 200);
  assert.equal((await retry(owner, id)).status, 202, "room again: accepted");
});

Deno.test("retry: counts as an upload against the minute's rate (429 rate_limited)", async () => {
  await using app = await startApp({
    MODEL_DURATION_MS: "60000",
    UPLOADS_PER_MINUTE: "2",
  });
  const owner = app.client();
  const running = await upload(owner);
  await owner.events(running.id, (j) => j.status === "processing");
  const { id } = await upload(owner);
  assert.equal(await status(del(owner, id)), 200);
  const refused = await retry(owner, id);
  assert.deepEqual([refused.status, refused.body.error.code], [
    429,
    "rate_limited",
  ]);
  assert.equal(
    (await owner.json<{ jobs: ApiJobLike[] }>("/api/jobs")).body.jobs.length,
    2,
  );
});

/** A store whose first `copyImage` lets `after` run once the copy is made: a race at that moment. */
function racingStore(store: Store, after: () => Promise<void>): Store {
  let once = false;
  return new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === "copyImage") {
        return async (from: string, to: string) => {
          const copied = await target.copyImage(from, to);
          if (!once) {
            once = true;
            await after();
          }
          return copied;
        };
      }
      const value = Reflect.get(target, prop, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

Deno.test("retry racing a DELETE of the original (after the copy, before the commit): 409, and no job or file is left of the retry", async () => {
  await using t = await STORES.memory();
  let race = async () => {};
  const store = racingStore(t.store, () => race());
  await using app = await startApp({ MODEL_DURATION_MS: "60000" }, { store });
  const owner = app.client();
  const running = await upload(owner);
  await owner.events(running.id, (j) => j.status === "processing");
  const { id } = await upload(owner);
  assert.equal(await status(del(owner, id)), 200);
  race = async () => assert.equal(await status(del(owner, id)), 204);
  const r = await retry(owner, id);
  assert.deepEqual([r.status, r.body.error.code], [409, "not_retryable"]);
  const jobs = (await owner.json<{ jobs: ApiJobLike[] }>("/api/jobs")).body
    .jobs;
  assert.deepEqual(jobs.map((j) => j.id), [running.id]);
  const images = (await Array.fromAsync(store.entries())).filter((e) =>
    e.kind === "image"
  );
  assert.deepEqual(images.map((e) => e.id), [running.id]);
});
