/** Load behaviour a user relies on: the queue cap, Retry-After, shared watches, no leaks. */
import assert from "node:assert/strict";
import { loadConfig } from "../config.ts";
import { takeSlot } from "../queue/rate.ts";
import { startService } from "../service.ts";
import { FakeEncoder } from "./_fakes.ts";
import { Client, fixture, startServer } from "./_server.ts";

Deno.test("MAX_QUEUE under 30 concurrent uploads: exactly the cap is accepted, the rest get 429 queue_full", async () => {
  await using server = await startServer({
    MAX_QUEUE: "5",
    MODEL_DURATION_MS: "60000",
    // All 30 come from one address: the per-client caps are not under test.
    MAX_UPLOADS_IN_FLIGHT_PER_CLIENT: "30",
  });
  const first = new Client(server.url);
  const running = (await first.upload(await fixture("rgb.png"))).body as {
    id: string;
  };
  await first.events(running.id, (j) => j.status === "processing");
  const png = await fixture("rgb.png");
  // Each from its own session, so that the rate limit is not what refuses them.
  const results = await Promise.all(
    Array.from({ length: 30 }, () => new Client(server.url).upload(png)),
  );
  const accepted = results.filter((r) => r.status === 202);
  const refused = results.filter((r) => r.status === 429);
  assert.equal(accepted.length, 5);
  assert.equal(refused.length, 25);
  for (const r of refused) {
    assert.equal(
      (r.body as { error: { code: string } }).error.code,
      "queue_full",
    );
    // A place frees when the running job ends: at most the model time away.
    const retry = Number(r.headers.get("retry-after"));
    assert.ok(retry >= 50 && retry <= 60, `Retry-After ${retry}`);
  }
  const metrics = await (await first.fetch("/metrics")).text();
  assert.match(metrics, /^img2vid_queue_depth 5$/m);
});

Deno.test("rate limit Retry-After is the time left in the session's minute", async () => {
  using kv = await Deno.openKv(":memory:");
  const minute = 29_000_000 * 60_000;
  assert.equal(await takeSlot(kv, "upload", "s", minute + 1_000, 2), null);
  assert.equal(await takeSlot(kv, "upload", "s", minute + 2_000, 2), null);
  assert.equal(await takeSlot(kv, "upload", "s", minute + 45_000, 2), 15_000);
  assert.equal(
    await takeSlot(kv, "upload", "other", minute + 45_000, 2),
    null,
    "per session",
  );
  assert.equal(
    await takeSlot(kv, "upload", "s", minute + 60_000, 2),
    null,
    "a new minute",
  );
});

Deno.test("N event streams on one job share one KV watch, and it goes when they go", async () => {
  await using server = await startServer({ MODEL_DURATION_MS: "60000" });
  const client = new Client(server.url);
  const { id } = (await client.upload(await fixture("rgb.png"))).body as {
    id: string;
  };
  const { hostname, port } = new URL(server.url);
  const request = new TextEncoder().encode(
    `GET /api/jobs/${id}/events HTTP/1.1\r\nHost: ${hostname}\r\nCookie: ${client.cookie}\r\n\r\n`,
  );
  const conns = await Promise.all(Array.from({ length: 25 }, async () => {
    const conn = await Deno.connect({ hostname, port: Number(port) });
    await conn.write(request);
    const buf = new Uint8Array(4096);
    let text = "";
    while (!text.includes("event: job")) {
      text += new TextDecoder().decode(
        buf.subarray(0, (await conn.read(buf)) ?? 0),
      );
    }
    return conn;
  }));
  const metrics = await (await client.fetch("/metrics")).text();
  assert.match(metrics, /^img2vid_sse_clients 25$/m);
  assert.match(metrics, /^img2vid_kv_watches 1$/m);
  for (const c of conns) c.close();
});

Deno.test("clients that vanish leave no watch, listener or timer behind (sanitizers on)", async () => {
  const dataDir = await Deno.makeTempDir();
  const service = await startService(
    loadConfig({
      DATA_DIR: dataDir,
      KV_PATH: ":memory:",
      MODEL_DURATION_MS: "600000",
    }),
    { encoder: new FakeEncoder() },
  );
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    service.app!.fetch,
  );
  const base = `http://127.0.0.1:${server.addr.port}`;
  const res = await fetch(`${base}/api/jobs`, {
    method: "POST",
    body: await fixture("rgb.png"),
    headers: { "content-type": "image/png" },
  });
  const cookie = res.headers.get("set-cookie")!.split(";")[0];
  const ids = [(await res.json()).id];
  const second = await fetch(`${base}/api/jobs`, {
    method: "POST",
    body: await fixture("rgb.png"),
    headers: { "content-type": "image/png", cookie },
  });
  ids.push((await second.json()).id);
  // 20 streams on the running job and 20 on the waiting one, then all gone at once.
  const request = (id: string) =>
    new TextEncoder().encode(
      `GET /api/jobs/${id}/events HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\n\r\n`,
    );
  const conns = await Promise.all(Array.from({ length: 40 }, async (_, i) => {
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.addr.port,
    });
    await conn.write(request(ids[i % 2]));
    await conn.read(new Uint8Array(4096));
    return conn;
  }));
  assert.equal(service.hub.watching, 2);
  assert.equal(service.hub.listeners, 40);
  for (const c of conns) c.close();
  await service.hub.idle();
  assert.equal(service.hub.listeners, 0);
  await server.shutdown();
  await service.close();
  await Deno.remove(dataDir, { recursive: true });
});
