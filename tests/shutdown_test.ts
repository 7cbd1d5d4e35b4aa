/** A graceful stop: SIGTERM and SIGINT hand the running job back and exit 0. */
import assert from "node:assert/strict";
import { startService } from "../service.ts";
import { loadConfig } from "../config.ts";
import { FakeEncoder } from "./_fakes.ts";
import { type ApiJobLike, Client, fixture, startServer } from "./_server.ts";

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.test(`${signal}: exit 0 with the running job back in line, which then runs again after the restart`, async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "img2vid-stop-" });
    const env = { MODEL_DURATION_MS: "1500", LEASE_MS: "60000" };
    let server = await startServer(env, dataDir);
    const client = new Client(server.url);
    const id =
      ((await client.upload(await fixture("rgb.png"))).body as { id: string })
        .id;
    const open = client.events(id, () => false); // a listener still connected at the stop
    await client.events(
      id,
      (j) => j.status === "processing" && j.progress > 20,
    );
    const status = await server.stop(signal);
    assert.equal(status.code, 0, server.output());
    assert.equal(
      (await open).ended,
      true,
      "open event streams are ended, so browsers reconnect",
    );

    // The lease was released: a restart runs the job at once, not after LEASE_MS (60 s).
    server = await startServer(env, dataDir);
    client.base = server.url;
    const job = (await client.json<ApiJobLike>(`/api/jobs/${id}`)).body;
    assert.ok(["queued", "processing"].includes(job.status), job.status);
    const { events } = await client.events(id, (j) => j.status === "done");
    assert.equal(events.at(-1)!.job.status, "done");
    await server.stop("SIGKILL");
    await Deno.remove(dataDir, { recursive: true });
  });
}

Deno.test("while draining, uploads get 503 with Retry-After", async () => {
  const dataDir = await Deno.makeTempDir();
  const config = loadConfig({ DATA_DIR: dataDir, KV_PATH: ":memory:" });
  const service = await startService(config, { encoder: new FakeEncoder() });
  await service.drain();
  const form = new FormData();
  form.append("image", new Blob([await fixture("rgb.png")]), "a.png");
  const res = await service.app!.request("/api/jobs", {
    method: "POST",
    body: form,
  });
  assert.equal(res.status, 503);
  assert.equal(res.headers.get("retry-after"), "5");
  assert.equal((await res.json()).error.code, "unavailable");
  await service.close();
  await Deno.remove(dataDir, { recursive: true });
});
