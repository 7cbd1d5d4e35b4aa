/** The whole pipeline against the real server on port 0, as a client sees it. */
import assert from "node:assert/strict";
import { inspectVideo } from "./_media.ts";
import { type ApiJobLike, Client, fixture, startServer } from "./_server.ts";

const MODEL_MS = 1500;

Deno.test("upload → queued → processing with live progress → done → a playable 5-frame video", async () => {
  await using server = await startServer({
    MODEL_DURATION_MS: String(MODEL_MS),
  });
  const client = new Client(server.url);
  const first = await client.upload(
    await fixture("rotated.jpg"),
    "holiday.jpg",
    "image/jpeg",
  );
  assert.equal(first.status, 202);
  const job = first.body as unknown as ApiJobLike;
  assert.equal(first.headers.get("location"), `/api/jobs/${job.id}`);
  assert.match(job.id, /^[0-9A-Z]{26}$/);
  assert.deepEqual(job.image, {
    type: "image/jpeg",
    width: 32,
    height: 64,
    bytes: 634,
  });
  assert.ok(["queued", "processing"].includes(job.status));

  // A second upload waits behind the first, with a position and an ETA.
  const second = (await client.upload(await fixture("rgb.png")))
    .body as unknown as ApiJobLike;
  assert.equal(second.status, "queued");
  assert.equal(second.position, 1);
  assert.ok(
    second.etaSeconds! >= 1 && second.etaSeconds! <= 2 * MODEL_MS / 1000 + 1,
  );

  const { events, type } = await client.events(
    job.id,
    (j) => j.status === "done",
  );
  assert.match(type!, /^text\/event-stream/);
  const running = events.filter((e) => e.job.status === "processing");
  assert.ok(running.length >= 3, `${running.length} progress events`);
  for (let i = 1; i < running.length; i++) {
    assert.ok(running[i].job.progress >= running[i - 1].job.progress);
    assert.ok(running[i].id > running[i - 1].id, "event ids rise");
  }
  assert.ok(running.every((e) => e.job.progress < 100));
  const done = events.at(-1)!.job;
  assert.equal(done.progress, 100);
  const took = Date.parse(done.finishedAt!) - Date.parse(done.startedAt!);
  // The model takes its time (the clip is made inside it); how close to the
  // model time a job ends is a speed figure: `deno task bench`, "job duration".
  assert.ok(took >= MODEL_MS, `took ${took} ms`);
  assert.equal(done.video!.type, "video/mp4");
  assert.ok(Date.parse(done.video!.expiresAt) - Date.now() <= 3_600_000);

  // The video, fetched as the page's <video> would.
  const res = await client.fetch(done.video!.url, {
    headers: { "sec-fetch-dest": "video" },
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "video/mp4");
  assert.equal(res.headers.get("content-disposition"), "inline");
  assert.equal(res.headers.get("cache-control"), "no-store");
  const dir = await Deno.makeTempDir();
  await Deno.writeFile(`${dir}/v.mp4`, new Uint8Array(await res.arrayBuffer()));
  const facts = await inspectVideo(`${dir}/v.mp4`);
  await Deno.remove(dir, { recursive: true });
  assert.deepEqual([facts.codec, facts.pixFmt, facts.frames], [
    "h264",
    "yuv420p",
    5,
  ]);
  assert.ok(facts.height > facts.width, "portrait, as the photo is displayed");

  // The second job follows; the list shows both, newest first.
  await client.events(second.id, (j) => j.status === "done");
  const list = await client.json<{ jobs: ApiJobLike[] }>("/api/jobs");
  assert.deepEqual(list.body.jobs.map((j) => [j.id, j.status]), [[
    second.id,
    "done",
  ], [job.id, "done"]]);
  const gap = Date.parse(list.body.jobs[0].startedAt!) -
    Date.parse(list.body.jobs[1].finishedAt!);
  // One after the other (how small the gap is: `deno task bench`).
  assert.ok(gap >= 0, `idle gap ${gap} ms`);
});

Deno.test("the event stream sends the current state at once, also on reconnect with Last-Event-ID, and ends after a final state", async () => {
  await using server = await startServer({ MODEL_DURATION_MS: "800" });
  const client = new Client(server.url);
  const { body } = await client.upload(
    await fixture("baseline.jpg"),
    "a.jpg",
    "image/jpeg",
  );
  const id = (body as unknown as ApiJobLike).id;
  const first = await client.events(id, () => true);
  assert.equal(first.events.length, 1);
  const again = await client.events(id, () => true, {
    "last-event-id": first.events[0].id,
  });
  assert.equal(again.events.length, 1);
  assert.equal(again.events[0].job.id, id);
  const rest = await client.events(id, () => false);
  assert.equal(rest.ended, true, "the stream closes by itself");
  assert.equal(rest.events.at(-1)!.job.status, "done");
  const late = await client.events(id, () => false);
  assert.deepEqual(
    [late.ended, late.events.length, late.events[0].job.status],
    [true, 1, "done"],
  );
});

Deno.test("a bad configuration stops the start with one line naming the variable", async () => {
  for (
    const [name, value] of [["PORT", "eighty"], ["MODEL_DURATION_MS", "-5"], [
      "ROLE",
      "boss",
    ]]
  ) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("../main.ts", import.meta.url).pathname],
      env: { [name]: value, DATA_DIR: await Deno.makeTempDir() },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 1);
    const lines = new TextDecoder().decode(out.stderr).trim().split("\n");
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(lines[0], new RegExp(`^img2vid: invalid ${name}=`));
  }
});
