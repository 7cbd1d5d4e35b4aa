/**
 * Issue 11's "a kill -9 of our worker mid prediction followed by a restart
 * (one prediction per job)", against the real server with `MODEL=cog` and
 * the fake Cog server; registered in `crash_test.ts`.
 */
import assert from "node:assert/strict";
import { Client, fixture, startServer } from "./_server.ts";
import { FakeCog } from "./fake_cog.ts";

/**
 * A port free now, so that the restarted server listens where the webhook
 * URL given to Cog points (Cog keeps the first PUT's webhook).
 */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

export async function cogKillMidPrediction(): Promise<void> {
  // The model's video must be one ffmpeg reads: it becomes the job's MP4.
  await using fake = new FakeCog({ video: await fixture("clip.frag.mp4") });
  const dataDir = await Deno.makeTempDir({ prefix: "img2vid-cog-crash-" });
  const env = {
    PORT: String(freePort()),
    MODEL: "cog",
    MODEL_URLS: fake.url,
    MODEL_INPUT: "input_image",
    MODEL_INPUTS: '{"frames_per_second":6}',
    LEASE_MS: "600",
    MODEL_TIMEOUT_MS: "60000",
  };
  let server = await startServer(env, dataDir);
  try {
    const client = new Client(server.url);
    const id = ((await client.upload(await fixture("rgb.png"))).body as {
      id: string;
    }).id;
    await fake.until(() => fake.current?.status === "processing");
    assert.equal(fake.current!.id, id, "the job id is the prediction id");
    assert.equal(await fake.progress(3, 10), 200);
    await client.events(id, (j) => j.progress >= 30);

    await server.stop("SIGKILL");
    assert.ok(fake.busy, "the prediction runs on without us");
    server = await startServer(env, dataDir);
    const again = new Client(server.url);
    again.cookie = client.cookie;

    // The restarted worker re-attaches with the same PUT: 202, nothing new.
    await fake.until(() => fake.puts.get(id) === 2);
    assert.equal(await fake.progress(8, 10), 200);
    await again.events(id, (j) => j.progress >= 80);
    assert.equal(await fake.succeed(), 200);
    const done = await again.events(
      id,
      (j) => j.status === "done" || j.status === "failed",
    );
    const job = done.events.at(-1)!.job;
    assert.equal(job.status, "done", JSON.stringify(job.error));
    assert.equal(fake.started.get(id), 1, "one prediction for the job");
    assert.equal(fake.total, 1);
  } finally {
    await server.stop("SIGKILL");
    await Deno.remove(dataDir, { recursive: true });
  }
}
