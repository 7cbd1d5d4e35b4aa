/**
 * The routes' error and ownership paths, in process (`createApp` with a
 * `:memory:` KV and the fake encoder): every `:id` route validates the id,
 * answers 404 to any session but the owner's, and a browser form post ends on
 * a page.
 */
import assert from "node:assert/strict";
import { startApp, type TestApp } from "./_app.ts";
import { FakeClock } from "./_fakes.ts";
import { type ApiJobLike, fixture } from "./_server.ts";

const HTML = "text/html,application/xhtml+xml,*/*;q=0.8"; // what a browser's form post accepts

const form = (bytes: Uint8Array, name = "photo.png") => {
  const f = new FormData();
  f.append("image", new File([bytes as Uint8Array<ArrayBuffer>], name));
  return f;
};

Deno.test("a form post without JavaScript: 303 to the job's page, which shows the job", async () => {
  await using app = await startApp({ MODEL_DURATION_MS: "60000" });
  const browser = app.client();
  const res = await browser.fetch("/api/jobs", {
    method: "POST",
    body: form(await fixture("rgb.png")),
    headers: { accept: HTML },
    redirect: "manual",
  });
  assert.equal(res.status, 303);
  const location = res.headers.get("location") ?? "";
  const id = /^\/jobs\/([0-9A-Z]{26})$/.exec(location)?.[1];
  assert.ok(id, `Location ${location}`);
  await res.body?.cancel();
  const page = await browser.fetch(location);
  assert.equal(page.status, 200);
  // The job's card, rendered on the server (the id alone is also in the page's links).
  assert.match(
    await page.text(),
    new RegExp(`<li class="job (queued|processing)" data-job-id="${id}"`),
  );
});

Deno.test("a refused form post without JavaScript: the page again, with the sentence and the status", async () => {
  await using app = await startApp({ UPLOADS_PER_MINUTE: "2" });
  const browser = app.client();
  const refused = await browser.fetch("/api/jobs", {
    method: "POST",
    body: form(new TextEncoder().encode("not a picture"), "a.png"),
    headers: { accept: HTML, "accept-language": "en" },
  });
  assert.equal(refused.status, 415);
  assert.match(refused.headers.get("content-type") ?? "", /^text\/html/);
  const html = await refused.text();
  assert.match(
    html,
    /<p class="error refused" role="alert">[^<]*PNG, JPEG or WebP/,
  );
  assert.match(html, /<form[^>]*action="\/api\/jobs"/, "the form to try again");

  // The refused one counted against the minute; this one is the second and last.
  const accepted = await browser.fetch("/api/jobs", {
    method: "POST",
    body: form(await fixture("rgb.png")),
    headers: { accept: HTML },
    redirect: "manual",
  });
  assert.equal(accepted.status, 303);
  await accepted.body?.cancel();
  // A refusal in the visitor's language, with its Retry-After kept.
  const limited = await browser.fetch("/api/jobs", {
    method: "POST",
    body: form(await fixture("rgb.png")),
    headers: { accept: HTML, "accept-language": "zh-CN" },
  });
  assert.equal(limited.status, 429);
  assert.ok(Number(limited.headers.get("retry-after")) >= 1);
  assert.match(
    await limited.text(),
    /<p class="error refused" role="alert">[^<]*[\u4e00-\u9fff]/,
  );

  // A script (curl, fetch) still gets the contract's JSON.
  const json = await browser.fetch("/api/jobs", {
    method: "POST",
    body: form(new TextEncoder().encode("not a picture"), "a.png"),
  });
  assert.equal(json.status, 429);
  assert.equal((await json.json()).error.code, "rate_limited");
});

Deno.test("every :id route: a malformed id is 404 not_found, another session's job is 404 too", async () => {
  await using app = await startApp({ MODEL_DURATION_MS: "60000" });
  const owner = app.client();
  const stranger = app.client();
  const { body } = await owner.upload(await fixture("rgb.png"));
  const id = (body as unknown as ApiJobLike).id;
  await stranger.fetch("/api/jobs");
  const routes: [string, string][] = [
    ["GET", "/api/jobs/ID"],
    ["DELETE", "/api/jobs/ID"],
    ["GET", "/api/jobs/ID/events"],
    ["POST", "/api/jobs/ID/playback"],
  ];
  for (const [method, path] of routes) {
    // A 3,000-character id is over KV's 2 KiB key limit: unvalidated, it is a 500.
    const bads = [
      "nope",
      "01j0000000000000000000000a",
      `${id}x`,
      "A".repeat(3000),
    ];
    for (const bad of bads) {
      const res = await owner.fetch(path.replace("ID", bad), { method });
      assert.equal(
        res.status,
        404,
        `${method} ${path} with ${bad.slice(0, 30)}`,
      );
      assert.equal((await res.json()).error.code, "not_found");
    }
    const res = await stranger.fetch(path.replace("ID", id), { method });
    assert.equal(res.status, 404, `${method} ${path} by a stranger`);
    assert.equal((await res.json()).error.code, "not_found");
  }
  const page = await stranger.fetch(`/jobs/${id}`);
  assert.equal(page.status, 404);
  await page.body?.cancel();
  // The owner still has it, untouched by all of the above.
  const own = await owner.json<ApiJobLike>(`/api/jobs/${id}`);
  assert.equal(own.status, 200);
  assert.notEqual(own.body.status, "cancelled");
});

Deno.test("while draining, uploads get 503 unavailable with Retry-After", async () => {
  await using app = await startApp();
  await app.service.drain();
  const res = await app.client().upload(await fixture("rgb.png"));
  assert.equal(res.status, 503);
  assert.equal(
    (res.body as { error: { code: string } }).error.code,
    "unavailable",
  );
  assert.equal(res.headers.get("retry-after"), "5");
});

Deno.test("behind a TLS proxy (TRUST_PROXY=1): the page's https origin is same-origin, others are not", async () => {
  const png = await fixture("rgb.png");
  const send = (client: ReturnType<TestApp["client"]>, headers: HeadersInit) =>
    client.fetch("/api/jobs", {
      method: "POST",
      body: form(png),
      headers: {
        "x-forwarded-proto": "https",
        "x-forwarded-host": "img2vid.example.com",
        ...headers,
      },
    });
  {
    await using app = await startApp({ TRUST_PROXY: "1" });
    const browser = app.client();
    const ok = await send(browser, { origin: "https://img2vid.example.com" });
    assert.equal(ok.status, 202);
    await ok.body?.cancel();
    assert.match(browser.cookie, /img2vid_session=/);
    const evil = await send(browser, { origin: "https://evil.example" });
    assert.equal(evil.status, 403);
    await evil.body?.cancel();
    // The cookie a visitor over https gets is Secure.
    const fresh = await app.client().fetch("/api/jobs", {
      headers: { "x-forwarded-proto": "https" },
    });
    assert.match(fresh.headers.get("set-cookie") ?? "", /Secure/);
    await fresh.body?.cancel();
  }
  {
    // Without proxies the forwarded headers are the client's own words: ignored.
    await using app = await startApp();
    const res = await send(app.client(), {
      origin: "https://img2vid.example.com",
    });
    assert.equal(res.status, 403);
    await res.body?.cancel();
  }
});

Deno.test("events: a reconnect with the final event's id gets 204, even after the line moved on; another id gets the state", async () => {
  await using app = await startApp({ MODEL_DURATION_MS: "50" });
  const owner = app.client();
  const { id } = (await owner.upload(await fixture("rgb.png"))).body as {
    id: string;
  };
  const { events } = await owner.events(id, (j) => j.status === "done");
  const finalId = events.at(-1)!.id;
  assert.ok(finalId, "events carry ids");
  const again = await owner.fetch(`/api/jobs/${id}/events`, {
    headers: { "last-event-id": finalId },
  });
  assert.equal(again.status, 204);
  assert.equal(await again.text(), "");
  // Another job joins and ends: the line's keys move, the finished job's id does not.
  const other = (await owner.upload(await fixture("rgb.png"))).body as {
    id: string;
  };
  await owner.events(other.id, (j) => j.status === "done");
  const later = await owner.fetch(`/api/jobs/${id}/events`, {
    headers: { "last-event-id": finalId },
  });
  assert.equal(later.status, 204);
  await later.body?.cancel();
  const { events: current } = await owner.events(
    id,
    (j) => j.status === "done",
    { "last-event-id": "0000000000000000000000" },
  );
  assert.equal(current.length, 1, "the current state, straight away");
  assert.equal(current[0].id, finalId, "under the same final id");
});

Deno.test("GET /api/line: the whole line in numbers for the page's summary, the same to every session", async () => {
  const clock = new FakeClock(Date.now());
  await using app = await startApp({ MODEL_DURATION_MS: "60000" }, { clock });
  const mine = app.client("192.0.2.1");
  const other = app.client("192.0.2.2");
  const png = await fixture("rgb.png");
  assert.deepEqual((await mine.json("/api/line")).body, {
    waiting: 0,
    running: 0,
    slots: 1,
  });
  assert.equal((await mine.upload(png)).status, 202);
  await clock.untilSleeping(1); // the model has taken the first one
  for (let i = 0; i < 2; i++) {
    assert.equal((await mine.upload(png)).status, 202);
  }
  assert.equal((await other.upload(png)).status, 202);

  const { status, headers, body } = await mine.json("/api/line");
  assert.equal(status, 200);
  assert.equal(headers.get("cache-control"), "no-store");
  assert.deepEqual(body, { waiting: 3, running: 1, slots: 1 });
  assert.deepEqual((await other.json("/api/line")).body, body);
});

Deno.test("a repeated ?lang= is the first one's page, never a validator's error", async () => {
  await using app = await startApp({
    MODEL_DURATION_MS: "60000",
    ADMIN_TOKEN: "0123456789abcdefXYZ",
  });
  const browser = app.client();
  for (const path of ["/?lang=zh-CN&lang=en", "/admin?lang=zh-CN&lang=fr"]) {
    const res = await browser.fetch(path);
    assert.equal(res.status, 200, path);
    assert.match(await res.text(), /<html lang="zh-CN"/, path);
  }
  const job = await browser.json<ApiJobLike>("/api/jobs", {
    method: "POST",
    body: form(await fixture("rgb.png")),
  });
  const page = await browser.fetch(`/jobs/${job.body.id}?lang=en&lang=en`);
  assert.equal(page.status, 200);
  await page.body?.cancel();
});

Deno.test("HEAD of a job's event stream: headers only, no stream left open", async () => {
  await using app = await startApp({ MODEL_DURATION_MS: "60000" });
  const owner = app.client();
  const job = await owner.json<ApiJobLike>("/api/jobs", {
    method: "POST",
    body: form(await fixture("rgb.png")),
  });
  for (let i = 0; i < 3; i++) {
    const res = await owner.fetch(`/api/jobs/${job.body.id}/events`, {
      method: "HEAD",
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /text\/event-stream/);
    await res.body?.cancel();
  }
  const metrics = await (await owner.fetch("/metrics")).text();
  assert.match(metrics, /^img2vid_sse_clients 0$/m);
});
