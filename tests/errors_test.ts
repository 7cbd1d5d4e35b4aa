/**
 * Every upload error code of the contract, from the app in process
 * (`createApp` with a `:memory:` KV), and that nothing is half-stored.
 */
import assert from "node:assert/strict";
import { crc32 } from "../media/probe.ts";
import { startApp, type TestApp } from "./_app.ts";
import { type Client, fixture } from "./_server.ts";

const LIMIT = 100_000;

async function assertError(
  res: Response | Promise<Response>,
  status: number,
  code: string,
) {
  const r = await res;
  assert.equal(r.status, status);
  assert.match(r.headers.get("content-type") ?? "", /application\/json/);
  const body = await r.json();
  assert.equal(body.error.code, code, JSON.stringify(body));
  assert.ok(
    typeof body.error.message === "string" && body.error.message.length > 10,
    body.error.message,
  );
  return r;
}

async function nothingStored(server: TestApp, client: Client) {
  for (const dir of ["uploads", "tmp"]) {
    const left = await Array.fromAsync(
      Deno.readDir(`${server.dataDir}/${dir}`),
    );
    assert.deepEqual(left.map((e) => e.name), [], `${dir}/ is empty`);
  }
  assert.deepEqual((await client.json("/api/jobs")).body, { jobs: [] });
}

const form = (...parts: [string, Blob, string?][]) => {
  const f = new FormData();
  for (const [name, blob, file] of parts) f.append(name, blob, file);
  return f;
};
const png = async () =>
  new Blob([await fixture("rgb.png")], { type: "image/png" });

/** A PNG header claiming width × height, then `extra` bytes of filler. */
function fakePng(width: number, height: number, extra = 0) {
  const ihdr = new Uint8Array(17);
  ihdr.set(new TextEncoder().encode("IHDR"));
  new DataView(ihdr.buffer).setUint32(4, width);
  new DataView(ihdr.buffer).setUint32(8, height);
  ihdr.set([8, 2, 0, 0, 0], 12);
  const out = new Uint8Array(8 + 4 + 17 + 4 + extra);
  out.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  new DataView(out.buffer).setUint32(8, 13);
  out.set(ihdr, 12);
  new DataView(out.buffer).setUint32(29, crc32(ihdr));
  return out;
}

Deno.test("refused uploads: each gets its code and a sentence, and nothing is stored", async (t) => {
  await using server = await startApp({
    MAX_UPLOAD_BYTES: String(LIMIT),
    MODEL_DURATION_MS: "500",
  });
  const client = server.client();
  const post = (body: BodyInit, headers: HeadersInit = {}) =>
    client.fetch("/api/jobs", { method: "POST", body, headers });

  await t.step(
    "400 bad_request: not multipart, no image field, several files, empty",
    async () => {
      await assertError(
        post("hello", { "content-type": "text/plain" }),
        400,
        "bad_request",
      );
      await assertError(
        post(form(["photo", await png(), "a.png"])),
        400,
        "bad_request",
      );
      await assertError(
        post(
          form(["image", await png(), "a.png"], [
            "image",
            await png(),
            "b.png",
          ]),
        ),
        400,
        "bad_request",
      );
      await assertError(
        post(
          form(["image", await png(), "a.png"], [
            "other",
            await png(),
            "b.png",
          ]),
        ),
        400,
        "bad_request",
      );
      await assertError(
        post(new Uint8Array(0), { "content-type": "image/png" }),
        400,
        "bad_request",
      );
      await assertError(
        post("--x\r\nbroken", {
          "content-type": "multipart/form-data; boundary=x",
        }),
        400,
        "bad_request",
      );
    },
  );

  await t.step(
    "403 forbidden_origin: cross-site Origin or Sec-Fetch-Site",
    async () => {
      await assertError(
        post(form(["image", await png(), "a.png"]), {
          origin: "https://evil.example",
        }),
        403,
        "forbidden_origin",
      );
      await assertError(
        post(await fixture("rgb.png"), {
          "content-type": "image/png",
          "sec-fetch-site": "cross-site",
        }),
        403,
        "forbidden_origin",
      );
      await assertError(
        client.fetch("/api/jobs/x", {
          method: "DELETE",
          headers: { origin: "null" },
        }),
        403,
        "forbidden_origin",
      );
    },
  );

  await t.step(
    "413 too_large: by Content-Length at once, and while streaming a chunked body",
    async () => {
      const big = fakePng(100, 100, LIMIT * 3);
      await assertError(
        post(form(["image", new Blob([big]), "big.png"])),
        413,
        "too_large",
      );
      await assertError(
        post(big, { "content-type": "image/png" }),
        413,
        "too_large",
      );
      // No Content-Length: the server counts the bytes as they come and answers
      // before the body ends. This body stalls after 3 × the limit until the
      // answer has arrived, so a server that waited for the end would never answer.
      let answered!: () => void;
      const answer = new Promise<void>((r) => (answered = r));
      let sent = 0;
      const chunked = new ReadableStream<Uint8Array>({
        async pull(c) {
          if (sent >= LIMIT * 3) {
            await answer;
            return c.close();
          }
          c.enqueue(
            sent === 0 ? fakePng(100, 100, 16_000) : new Uint8Array(16_384),
          );
          sent += 16_384;
        },
      });
      const res = client.fetch("/api/jobs", {
        method: "POST",
        body: chunked,
        headers: { "content-type": "image/png" },
        signal: AbortSignal.timeout(20_000), // a failure bound, not a wait
      });
      await assertError(res.finally(answered), 413, "too_large");
    },
  );

  await t.step(
    "415 unsupported_type: decided by the bytes, whatever the name or type says",
    async () => {
      const gif = new Blob([await fixture("animated.gif")], {
        type: "image/png",
      });
      await assertError(
        post(form(["image", gif, "looks.png"])),
        415,
        "unsupported_type",
      );
      await assertError(
        post(new TextEncoder().encode("<?php echo 1; ?>"), {
          "content-type": "image/jpeg",
        }),
        415,
        "unsupported_type",
      );
    },
  );

  await t.step(
    "422 invalid_image: truncated, zero pixels, more pixels than the model accepts",
    async () => {
      const whole = await fixture("baseline.jpg");
      await assertError(
        post(whole.subarray(0, 500), { "content-type": "image/jpeg" }),
        422,
        "invalid_image",
      );
      await assertError(
        post(fakePng(0, 10), { "content-type": "image/png" }),
        422,
        "invalid_image",
      );
      const bomb = await assertError(
        post(form(["image", new Blob([fakePng(60_000, 60_000)]), "bomb.png"])),
        422,
        "invalid_image",
      );
      assert.ok(bomb);
    },
  );

  await t.step(
    "nothing refused was queued or left on disk",
    () => nothingStored(server, client),
  );

  await t.step("a file name is never used as a path", async () => {
    const res = await post(
      form(["image", await png(), "../../../../etc/passwd.png"]),
    );
    assert.equal(res.status, 202);
    const { id } = await res.json();
    const stored = await Array.fromAsync(
      Deno.readDir(`${server.dataDir}/uploads`),
    );
    assert.deepEqual(stored.map((e) => e.name), [id]);
  });

  await t.step("unknown routes and methods answer JSON", async () => {
    await assertError(client.fetch("/api/nothing"), 404, "not_found");
  });
});

Deno.test("429 queue_full past MAX_QUEUE (the running job not counted), with Retry-After", async () => {
  await using server = await startApp({
    MAX_QUEUE: "1",
    MODEL_DURATION_MS: "60000",
  });
  const client = server.client();
  const running = await client.upload(await fixture("rgb.png"));
  assert.equal(running.status, 202);
  await client.events(
    (running.body as { id: string }).id,
    (j) => j.status === "processing",
  );
  assert.equal((await client.upload(await fixture("rgb.png"))).status, 202);
  const full = await assertError(
    client.fetch("/api/jobs", {
      method: "POST",
      body: form(["image", await png(), "c.png"]),
    }),
    429,
    "queue_full",
  );
  const retry = Number(full.headers.get("retry-after"));
  assert.ok(retry >= 1 && retry <= 60, `Retry-After ${retry}`);
  assert.equal(
    (await client.json<{ jobs: unknown[] }>("/api/jobs")).body.jobs.length,
    2,
  );
  // No upload left half-stored (the running job's encoder may be writing its video there).
  const temps = await Array.fromAsync(Deno.readDir(`${server.dataDir}/tmp`));
  assert.deepEqual(temps.filter((e) => e.name.endsWith(".upload")), []);
});

Deno.test("429 rate_limited past UPLOADS_PER_MINUTE for one session, with Retry-After; others unaffected", async () => {
  await using server = await startApp({
    UPLOADS_PER_MINUTE: "2",
    MODEL_DURATION_MS: "200",
  });
  const client = server.client();
  assert.equal((await client.upload(await fixture("rgb.png"))).status, 202);
  assert.equal((await client.upload(await fixture("rgb.png"))).status, 202);
  const limited = await assertError(
    client.fetch("/api/jobs", {
      method: "POST",
      body: form(["image", await png(), "c.png"]),
    }),
    429,
    "rate_limited",
  );
  const retry = Number(limited.headers.get("retry-after"));
  assert.ok(retry >= 1 && retry <= 60, `Retry-After ${retry}`);
  assert.equal(
    (await server.client().upload(await fixture("rgb.png"))).status,
    202,
  );
});
