/**
 * `DATA_MAX_BYTES` over HTTP (API.md, 507 `insufficient_storage`), in
 * process on a fake clock: uploads fill it, the next is refused before its
 * body is read, and a cancel, retention or the sweep's recount makes room.
 */
import assert from "node:assert/strict";
import { DiskStore } from "../media/store.ts";
import { addDataBytes } from "../queue/data_bytes.ts";
import { sweepExpired, sweepOrphans } from "../queue/retention.ts";
import { TIMINGS } from "../service.ts";
import { runToEnd, startApp, type TestApp } from "./_app.ts";
import { FakeClock, FakeEncoder } from "./_fakes.ts";
import { type Client, fixture } from "./_server.ts";

const IMAGE = await fixture("rgb.png");
/** Room for two uploads of {@link IMAGE}. */
const CAP = 2 * IMAGE.length;
/** A failure bound for a request that must not hang; not a timing assertion. */
const HANG_MS = 10_000;

/** The app with a small cap, on a fake clock, its model held unless told. */
async function start(hold = true) {
  const clock = new FakeClock(Date.now());
  const encoder = new FakeEncoder();
  if (hold) encoder.hold();
  const app = await startApp({
    DATA_MAX_BYTES: String(CAP),
    RETENTION_HOURS: "1",
  }, { clock, encoder });
  return { app, clock, store: new DiskStore(app.dataDir) };
}

/** POSTs `bytes` as the raw body; the status, after reading the answer. */
async function post(client: Client, bytes: Uint8Array = IMAGE) {
  const { status, body } = await client.json("/api/jobs", {
    method: "POST",
    body: bytes as Uint8Array<ArrayBuffer>,
    headers: { "content-type": "image/png" },
  });
  return { status, id: (body as { id?: string }).id! };
}

/**
 * POSTs a body that never ends (and never sends a byte): only an answer
 * given before the body is read can arrive. Returns it and whether the body
 * was ever read.
 */
async function postEndless(client: Client) {
  let reads = 0;
  const body = new ReadableStream<Uint8Array>({
    pull: () => {
      reads++;
      return new Promise<void>(() => {}); // no byte, ever
    },
  }, { highWaterMark: 0 });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error("the upload was not answered: its body was read")),
      HANG_MS,
    );
  });
  try {
    const res = await Promise.race([
      client.fetch("/api/jobs", {
        method: "POST",
        body,
        headers: { "content-type": "image/png" },
      }),
      bound,
    ]);
    return { res, error: (await res.json()).error, reads };
  } finally {
    clearTimeout(timer);
    await body.cancel().catch(() => {});
  }
}

/** `img2vid_data_bytes` from `/metrics`. */
async function metric(app: TestApp): Promise<number> {
  const text = await (await app.client().fetch("/metrics")).text();
  return Number(/^img2vid_data_bytes (\d+)$/m.exec(text)![1]);
}

/** What the store holds: images, video copies, unfinished uploads. */
async function held(store: DiskStore) {
  const count = { image: 0, video: 0, partial: 0 };
  for await (const e of store.entries()) count[e.kind]++;
  return count;
}

async function assertRefusedEarly(client: Client) {
  const { res, error, reads } = await postEndless(client);
  assert.equal(res.status, 507);
  assert.equal(error.code, "insufficient_storage");
  assert.ok(Number(res.headers.get("retry-after")) >= 1, "Retry-After");
  assert.equal(reads, 0, "the body was never read");
  return res;
}

Deno.test("DATA_MAX_BYTES: full, the next upload gets 507 before its body; a delete makes room; one that would cross leaves nothing", async () => {
  const { app, store } = await start();
  await using _ = app;
  const client = app.client();
  const a = await post(client), b = await post(client);
  assert.deepEqual([a.status, b.status], [202, 202]);
  assert.equal(await metric(app), CAP);

  await assertRefusedEarly(client);
  assert.deepEqual(await held(store), { image: 2, video: 0, partial: 0 });

  // A cancel keeps the picture for a retry (still counted); deleting the
  // cancelled job gives its bytes back.
  const cancel = await client.fetch(`/api/jobs/${b.id}`, { method: "DELETE" });
  assert.equal(cancel.status, 200);
  await cancel.body?.cancel();
  assert.equal(await metric(app), CAP);
  const gone = await client.fetch(`/api/jobs/${b.id}`, { method: "DELETE" });
  assert.equal(gone.status, 204);
  await gone.body?.cancel();
  assert.equal(await metric(app), IMAGE.length);
  const c = await post(client);
  assert.equal(c.status, 202, "room again after the delete");
  assert.equal(await metric(app), CAP);

  // Room for less than this picture: the pre-check cannot know its size
  // (a form's length is not the picture's), the commit can.
  for (const _ of ["cancel", "delete"]) {
    await (await client.fetch(`/api/jobs/${c.id}`, { method: "DELETE" }))
      .text();
  }
  const bigger = await fixture("deep16.png");
  assert.ok(IMAGE.length + bigger.length > CAP);
  const form = await client.upload(bigger);
  assert.equal(form.status, 507);
  assert.equal(form.headers.get("retry-after") !== null, true);
  assert.deepEqual(await held(store), { image: 1, video: 0, partial: 0 });
  assert.equal(await metric(app), IMAGE.length);
});

Deno.test("DATA_MAX_BYTES: a done job's video counts until retention removes it; then uploads are accepted again", async () => {
  const { app, clock, store } = await start(false);
  await using _ = app;
  const client = app.client();
  const { id } = await post(client);
  assert.equal((await runToEnd(client, clock, id)).status, "done");
  let videos = 0;
  for await (const e of store.entries()) {
    if (e.kind === "video") videos += e.size;
  }
  assert.ok(videos > CAP, "the fixture's video copies fill the cap");
  assert.equal(await metric(app), videos, "every copy, and no image");

  const full = await assertRefusedEarly(client);
  const hour = 3_600;
  assert.ok(Number(full.headers.get("retry-after")) <= hour, "when it expires");

  clock.advance(hour * 1000);
  const kv = app.service.kv;
  assert.equal(await sweepExpired(kv, store, clock.now(), hour * 1000), 1);
  assert.equal(await metric(app), 0);
  assert.equal((await post(client)).status, 202);
});

Deno.test("DATA_MAX_BYTES: a count that drifted is set right by the sweep's recount", async () => {
  const { app, clock, store } = await start();
  await using _ = app;
  const client = app.client();
  assert.equal((await post(client)).status, 202);
  const kv = app.service.kv;
  // As if a crash had lost a removal: bytes counted with no file behind them.
  await addDataBytes(kv.atomic(), 100 * CAP).commit();
  await assertRefusedEarly(client);

  await sweepOrphans(kv, store, clock.now(), TIMINGS.orphanGraceMs);
  assert.equal(await metric(app), IMAGE.length);
  assert.equal((await post(client)).status, 202);
});
