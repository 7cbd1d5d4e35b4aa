/**
 * A real model behind the queue (API.md "Models"), through the real server:
 * `MODEL=command` runs the operator's program per job; its progress reaches
 * the page's event stream and its own frames become the contract's MP4.
 */
import assert from "node:assert/strict";
import { inspectVideo } from "./_media.ts";
import { type ApiJobLike, Client, fixture, startServer } from "./_server.ts";

const FAKE_MODEL = new URL("./fixtures/fake_model.sh", import.meta.url)
  .pathname;
const MODEL_VIDEO = new URL("./fixtures/model.avi", import.meta.url).pathname;

async function commandServer(mode: string) {
  const notes = await Deno.makeTempDir({ prefix: "img2vid-model-" });
  const server = await startServer({
    MODEL: "command",
    MODEL_COMMAND: `sh ${FAKE_MODEL}`,
    FAKE_MODE: mode,
    FAKE_DIR: notes,
    FAKE_VIDEO: MODEL_VIDEO,
  });
  const stop = server[Symbol.asyncDispose].bind(server);
  return Object.assign(server, {
    async [Symbol.asyncDispose]() {
      await stop();
      await Deno.remove(notes, { recursive: true });
    },
  });
}

Deno.test("MODEL=command: the program's progress is the job's, and its own frames are the video", async () => {
  await using server = await commandServer("done");
  const client = new Client(server.url);
  const { id } = (await client.upload(await fixture("rgb.png"))).body as {
    id: string;
  };
  const { events } = await client.events(id, (j) => j.status === "done");
  const percents = events.filter((e) => e.job.status === "processing")
    .map((e) => e.job.progress);
  assert.ok(percents.some((p) => p >= 40), `tqdm's 40 % seen: ${percents}`);
  for (let i = 1; i < percents.length; i++) {
    assert.ok(percents[i] >= percents[i - 1], "never backwards");
  }
  const done = events.at(-1)!.job as ApiJobLike;
  const res = await client.fetch(done.video!.url, {
    headers: { "sec-fetch-dest": "video" },
  });
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(
      `${dir}/v.mp4`,
      new Uint8Array(await res.arrayBuffer()),
    );
    const [made, model] = [
      await inspectVideo(`${dir}/v.mp4`),
      await inspectVideo(MODEL_VIDEO),
    ];
    assert.deepEqual([made.codec, made.pixFmt], ["h264", "yuv420p"]);
    assert.equal(
      made.frames,
      model.frames,
      "the model's frames, not the 5-frame zoom",
    );
    assert.notEqual(made.frames, 5);
    assert.ok(made.width % 2 === 0 && made.height % 2 === 0);
    assert.equal(made.boxes.indexOf("moov") < made.boxes.indexOf("mdat"), true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("MODEL=command: a program that fails fails the job with its last line, and the next job runs", async () => {
  await using server = await commandServer("fail");
  const client = new Client(server.url);
  const ids: string[] = [];
  for (let i = 0; i < 2; i++) {
    ids.push(
      ((await client.upload(await fixture("rgb.png"))).body as { id: string })
        .id,
    );
  }
  for (const id of ids) {
    const { events } = await client.events(id, (j) => j.status === "failed");
    const failed = events.at(-1)!.job;
    assert.equal(failed.status, "failed");
    assert.equal(failed.error?.code, "model_failed");
    assert.match(failed.error!.message, /CUDA out of memory/);
  }
});
