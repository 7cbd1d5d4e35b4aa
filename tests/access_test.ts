/**
 * Ownership, the read-only video address, byte ranges, cancel, operations and
 * the page's headers, in process (`createApp` through `tests/_app.ts`).
 */
import assert from "node:assert/strict";
import { startApp } from "./_app.ts";
import { type ApiJobLike, type Client, fixture } from "./_server.ts";

Deno.test("jobs and their video belong to the session that made them", async (t) => {
  await using server = await startApp({ MODEL_DURATION_MS: "300" });
  const owner = server.client();
  const stranger = server.client();
  const { body } = await owner.upload(await fixture("rgb.png"));
  const id = (body as unknown as ApiJobLike).id;
  const { events } = await owner.events(id, (j) => j.status === "done");
  const url = events.at(-1)!.job.video!.url;
  await stranger.fetch("/api/jobs"); // give the stranger a session of its own

  await t.step(
    "another session gets 404 for the job, its events and its cancel",
    async () => {
      for (
        const [path, method] of [[`/api/jobs/${id}`, "GET"], [
          `/api/jobs/${id}/events`,
          "GET",
        ], [`/api/jobs/${id}`, "DELETE"]]
      ) {
        const res = await stranger.fetch(path, { method });
        assert.equal(res.status, 404, `${method} ${path}`);
        assert.equal((await res.json()).error.code, "not_found");
      }
      assert.deepEqual((await stranger.json("/api/jobs")).body, { jobs: [] });
    },
  );

  await t.step("a tampered cookie is simply a new session", async () => {
    const forged = server.client();
    // Another session id under the owner's signature.
    forged.cookie = owner.cookie.replace(
      /=(.)/,
      (_, c) => `=${c === "x" ? "y" : "x"}`,
    );
    assert.equal((await forged.fetch(`/api/jobs/${id}`)).status, 404);
    assert.notEqual(forged.cookie, owner.cookie);
  });

  await t.step("the session cookie is HttpOnly and SameSite=Lax", async () => {
    const res = await server.client().fetch("/api/jobs");
    const cookie = res.headers.get("set-cookie")!;
    await res.body?.cancel();
    assert.match(cookie, /HttpOnly/);
    assert.match(cookie, /SameSite=Lax/);
  });

  await t.step("the video: byte ranges for its owner (206, 416)", async () => {
    const media = { "sec-fetch-dest": "video" };
    const whole = await owner.fetch(url, { headers: media });
    const bytes = new Uint8Array(await whole.arrayBuffer());
    assert.equal(whole.headers.get("accept-ranges"), "bytes");
    const first = await owner.fetch(url, {
      headers: { ...media, range: "bytes=0-" },
    });
    assert.equal(first.status, 206);
    assert.equal(
      first.headers.get("content-range"),
      `bytes 0-${bytes.length - 1}/${bytes.length}`,
    );
    await first.body?.cancel();
    const part = await owner.fetch(url, {
      headers: { ...media, range: "bytes=10-19" },
    });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get("content-length"), "10");
    assert.deepEqual(
      new Uint8Array(await part.arrayBuffer()),
      bytes.subarray(10, 20),
    );
    const tail = await owner.fetch(url, {
      headers: { ...media, range: "bytes=-8" },
    });
    assert.deepEqual(
      new Uint8Array(await tail.arrayBuffer()),
      bytes.subarray(bytes.length - 8),
    );
    const past = await owner.fetch(url, {
      headers: { ...media, range: `bytes=${bytes.length}-` },
    });
    assert.equal(past.status, 416);
    assert.equal(past.headers.get("content-range"), `bytes */${bytes.length}`);
    await past.body?.cancel();
    assert.equal(whole.headers.get("cache-control"), "no-store");
    assert.equal(whole.headers.get("content-disposition"), "inline");
    assert.equal(whole.headers.get("x-content-type-options"), "nosniff");
  });

  await t.step(
    "the video: 403 to another session, no session, a new tab, a forged or expired address",
    async () => {
      const refused = async (
        client: Client | null,
        path: string,
        headers: HeadersInit = {},
      ) => {
        // null: a request without any session cookie.
        const res = await (client ?? server.client()).fetch(path, { headers });
        assert.equal(res.status, 403, path);
        assert.equal((await res.json()).error.code, "forbidden");
      };
      await refused(stranger, url);
      await refused(null, url);
      await refused(owner, url, { "sec-fetch-dest": "document" });
      await refused(
        owner,
        url.replace(/sig=./, (m) => (m.endsWith("A") ? "sig=B" : "sig=A")),
      );
      const exp = Number(new URL(url, "http://x").searchParams.get("exp"));
      await refused(owner, url.replace(`exp=${exp}`, `exp=${exp + 3_600_000}`));
      await refused(owner, url.replace(`exp=${exp}`, `exp=${Date.now() - 1}`));
      // A fresh GET hands out a fresh address.
      const again = (await owner.json<ApiJobLike>(`/api/jobs/${id}`)).body
        .video!;
      assert.equal((await owner.fetch(again.url)).status, 200);
    },
  );

  await t.step(
    "another session cannot delete it: 404, and it stays",
    async () => {
      const res = await stranger.fetch(`/api/jobs/${id}`, { method: "DELETE" });
      assert.equal(res.status, 404);
      await res.body?.cancel();
      assert.equal((await owner.fetch(`/api/jobs/${id}`)).status, 200);
    },
  );
});

Deno.test("cancel: a queued job leaves the line, a running one stops and the next starts", async () => {
  await using server = await startApp({ MODEL_DURATION_MS: "60000" });
  const client = server.client();
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    ids.push(
      ((await client.upload(await fixture("rgb.png"))).body as { id: string })
        .id,
    );
  }
  await client.events(ids[0], (j) => j.status === "processing");
  assert.equal(
    (await client.json<ApiJobLike>(`/api/jobs/${ids[2]}`)).body.position,
    2,
  );

  const queued = await client.json<ApiJobLike>(`/api/jobs/${ids[1]}`, {
    method: "DELETE",
  });
  assert.deepEqual([queued.status, queued.body.status], [200, "cancelled"]);
  assert.equal(
    (await client.json<ApiJobLike>(`/api/jobs/${ids[2]}`)).body.position,
    1,
  );

  const running = await client.json<ApiJobLike>(`/api/jobs/${ids[0]}`, {
    method: "DELETE",
  });
  assert.deepEqual([running.status, running.body.status], [200, "cancelled"]);
  const { events } = await client.events(
    ids[2],
    (j) => j.status === "processing",
  );
  const started = Date.parse(events.at(-1)!.job.startedAt!);
  const cancelled = Date.parse(running.body.finishedAt!);
  assert.ok(
    started - cancelled < 1000,
    `the next job started ${started - cancelled} ms after the cancel`,
  );
});

Deno.test("operations: /healthz answers and /metrics counts in Prometheus text", async () => {
  await using server = await startApp({ MODEL_DURATION_MS: "200" });
  const client = server.client();
  assert.deepEqual((await client.json("/healthz")).body, { ok: true });
  const { body } = await client.upload(await fixture("rgb.png"));
  await client.events((body as { id: string }).id, (j) => j.status === "done");
  const res = await client.fetch("/metrics");
  assert.match(
    res.headers.get("content-type")!,
    /^text\/plain; version=0\.0\.4/,
  );
  const text = await res.text();
  for (
    const line of [
      /^img2vid_queue_depth 0$/m,
      /^img2vid_jobs_total\{state="done"\} 1$/m,
      /^img2vid_sse_clients \d+$/m,
      /^img2vid_upload_refused_bytes_total 0$/m,
    ]
  ) {
    assert.match(text, line);
  }
  // At least the one job's model time (200 ms), in seconds; a loaded machine
  // may take more than a second, so the integer part is not fixed.
  const busy = /^img2vid_model_busy_seconds_total (\d+\.\d+|[1-9]\d*)$/m
    .exec(text);
  assert.ok(busy, "img2vid_model_busy_seconds_total is a positive number");
  assert.ok(Number(busy[1]) >= 0.2, `busy ${busy[1]} s < the model's 0.2 s`);
});

Deno.test("the page: secure headers, the form, the session's jobs rendered on the server", async () => {
  await using server = await startApp({ MODEL_DURATION_MS: "60000" });
  const client = server.client();
  await client.upload(await fixture("rgb.png"));
  const res = await client.fetch("/");
  const html = await res.text();
  assert.match(
    res.headers.get("content-security-policy")!,
    /default-src 'self'/,
  );
  assert.equal(res.headers.get("x-content-type-options"), "nosniff");
  assert.match(html, /<input[^>]*type="file"[^>]*name="image"/);
  assert.match(html, /role="progressbar"/);
  assert.match(html, /data-island="JobList"/);
});
