/**
 * The operators' API (API.md, "Operators"), in process: 404 without
 * `ADMIN_TOKEN`, 401 without the right bearer, every session's jobs in
 * pages, the slots with their utilisation, pause and resume, cancel of any
 * job.
 */
import assert from "node:assert/strict";
import { startApp } from "./_app.ts";
import { type ApiJobLike, type Client, fixture } from "./_server.ts";

const TOKEN = "operator-token-0123456789";
const bearer = (token = TOKEN) => ({ authorization: `Bearer ${token}` });

const upload = async (client: Client) => {
  const res = await client.upload(await fixture("rgb.png"));
  assert.equal(res.status, 202, JSON.stringify(res.body));
  return res.body as unknown as ApiJobLike;
};

const admin = <T = Record<string, unknown>>(
  client: Client,
  path: string,
  init: RequestInit = {},
) =>
  client.json<T & { error: { code: string } }>(path, {
    ...init,
    headers: { ...bearer(), ...init.headers as Record<string, string> },
  });

const ROUTES: [string, string][] = [
  ["GET", "/api/admin/jobs"],
  ["GET", "/api/admin/slots"],
  ["GET", "/api/admin/pause"],
  ["POST", "/api/admin/pause"],
  ["POST", "/api/admin/resume"],
  ["DELETE", "/api/admin/jobs/01JOB00000000000000000000A"],
];

Deno.test("admin: with ADMIN_TOKEN unset every admin route is 404, token or not", async () => {
  await using app = await startApp();
  const client = app.client();
  for (const [method, path] of ROUTES) {
    const res = await client.json<{ error: { code: string } }>(path, {
      method,
      headers: bearer(),
    });
    assert.deepEqual([res.status, res.body.error.code], [404, "not_found"]);
  }
  assert.equal((await client.fetch("/admin")).status, 404);
});

Deno.test("admin: a missing or wrong token is 401 with WWW-Authenticate, and changes nothing", async () => {
  await using app = await startApp({ ADMIN_TOKEN: TOKEN });
  const client = app.client();
  for (
    const headers of [
      {} as Record<string, string>,
      bearer("wrong"),
      bearer(TOKEN + "x"),
      bearer(TOKEN.slice(0, -1)),
      { authorization: `Basic ${btoa(`admin:${TOKEN}`)}` },
      { cookie: `token=${TOKEN}` },
    ]
  ) {
    for (const [method, path] of ROUTES) {
      const res = await client.fetch(path, { method, headers });
      assert.equal(
        res.status,
        401,
        `${method} ${path} ${JSON.stringify(headers)}`,
      );
      assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer/);
      assert.equal((await res.json()).error.code, "unauthorized");
    }
  }
  assert.equal((await admin(client, "/api/admin/pause")).body.paused, false);
  // The scheme is case-insensitive (RFC 9110 §11.1).
  const lower = await client.fetch("/api/admin/pause", {
    headers: { authorization: `bearer ${TOKEN}` },
  });
  assert.equal(lower.status, 200);
  await lower.body?.cancel();
});

Deno.test("admin: every session's jobs, newest first, without video; filtered by status; paged with a cursor", async () => {
  await using app = await startApp({
    ADMIN_TOKEN: TOKEN,
    MODEL_DURATION_MS: "60000",
  });
  const [a, b] = [app.client(), app.client()];
  const first = await upload(a);
  await a.events(first.id, (j) => j.status === "processing");
  const ids = [first.id];
  for (const c of [b, a, b]) ids.push((await upload(c)).id);
  const op = app.client();

  const all = await admin<{ jobs: ApiJobLike[]; cursor: string | null }>(
    op,
    "/api/admin/jobs",
  );
  assert.equal(all.status, 200);
  assert.equal(all.headers.get("cache-control"), "no-store");
  assert.deepEqual(all.body.jobs.map((j) => j.id), [...ids].reverse());
  assert.equal(all.body.cursor, null);
  for (const job of all.body.jobs) assert.equal("video" in job, false);
  assert.deepEqual(
    all.body.jobs.map((j) => [j.status, j.position]),
    [["queued", 3], ["queued", 2], ["queued", 1], ["processing", null]],
  );
  assert.equal(op.cookie, "", "no session is made for an operator");

  const queued = await admin<{ jobs: ApiJobLike[] }>(
    op,
    "/api/admin/jobs?status=processing",
  );
  assert.deepEqual(queued.body.jobs.map((j) => j.id), [first.id]);

  const seen: string[] = [];
  let cursor: string | null = null;
  do {
    const page: { body: { jobs: ApiJobLike[]; cursor: string | null } } =
      await admin(
        op,
        `/api/admin/jobs?limit=3${
          cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""
        }`,
      );
    assert.ok(page.body.jobs.length <= 3);
    seen.push(...page.body.jobs.map((j) => j.id));
    cursor = page.body.cursor;
  } while (cursor);
  assert.deepEqual(seen, [...ids].reverse());

  for (
    const bad of [
      "status=gone",
      "limit=0",
      "limit=201",
      "limit=x",
      "cursor=%00",
    ]
  ) {
    const res = await admin(op, `/api/admin/jobs?${bad}`);
    assert.deepEqual(
      [res.status, res.body.error.code],
      [400, "bad_request"],
      bad,
    );
  }
});

Deno.test("admin: cancel any session's queued or running job with the visitor's cancel; 409 once ended, 404 when missing", async () => {
  await using app = await startApp({
    ADMIN_TOKEN: TOKEN,
    MODEL_DURATION_MS: "60000",
  });
  const visitor = app.client();
  const running = await upload(visitor);
  await visitor.events(running.id, (j) => j.status === "processing");
  const queued = await upload(visitor);
  const op = app.client();

  const res = await admin<ApiJobLike>(op, `/api/admin/jobs/${queued.id}`, {
    method: "DELETE",
  });
  assert.deepEqual([res.status, res.body.status], [200, "cancelled"]);
  assert.equal("video" in res.body, false);
  const stopped = await admin<ApiJobLike>(op, `/api/admin/jobs/${running.id}`, {
    method: "DELETE",
  });
  assert.deepEqual([stopped.status, stopped.body.status], [200, "cancelled"]);
  // The owner sees it cancelled, and its image kept for a retry.
  const seen = await visitor.json<ApiJobLike>(`/api/jobs/${running.id}`);
  assert.equal(seen.body.status, "cancelled");
  const again = await admin(op, `/api/admin/jobs/${queued.id}`, {
    method: "DELETE",
  });
  assert.deepEqual([again.status, again.body.error.code], [
    409,
    "not_cancellable",
  ]);
  const missing = await admin(
    op,
    "/api/admin/jobs/01JOB00000000000000000000A",
    {
      method: "DELETE",
    },
  );
  assert.deepEqual([missing.status, missing.body.error.code], [
    404,
    "not_found",
  ]);
  const malformed = await admin(op, "/api/admin/jobs/nope", {
    method: "DELETE",
  });
  assert.equal(malformed.status, 404);
});

Deno.test("admin: pause refuses uploads and retries with 503 paused + Retry-After; queued jobs still run; resume takes them again", async () => {
  await using app = await startApp({
    ADMIN_TOKEN: TOKEN,
    MODEL_DURATION_MS: "100",
  });
  const visitor = app.client();
  const failedFirst = await upload(visitor);
  await visitor.events(failedFirst.id, (j) => j.status === "done");
  const waiting = await upload(visitor);
  const op = app.client();

  const paused = await admin<{ paused: boolean; since: string }>(
    op,
    "/api/admin/pause",
    { method: "POST" },
  );
  assert.equal(paused.status, 200);
  assert.equal(paused.body.paused, true);
  assert.ok(Date.parse(paused.body.since) > 0);
  // Pausing again keeps the first pause's start.
  const twice = await admin<{ since: string }>(op, "/api/admin/pause", {
    method: "POST",
  });
  assert.equal(twice.body.since, paused.body.since);

  const metrics = await (await visitor.fetch("/metrics")).text();
  assert.match(metrics, /^img2vid_intake_paused 1$/m);
  const refused = await visitor.upload(await fixture("rgb.png"));
  assert.equal(refused.status, 503);
  assert.equal(
    (refused.body as { error: { code: string } }).error.code,
    "paused",
  );
  assert.ok(Number(refused.headers.get("retry-after")) >= 1);
  // A form post without JavaScript: the page, with the sentence in words.
  const form = new FormData();
  form.append(
    "image",
    new File([await fixture("rgb.png") as Uint8Array<ArrayBuffer>], "a.png"),
  );
  const page = await visitor.fetch("/api/jobs", {
    method: "POST",
    body: form,
    headers: { accept: "text/html", "accept-language": "en" },
  });
  assert.equal(page.status, 503);
  assert.match(await page.text(), /role="alert">[^<]*maintenance/);
  // The job queued before the pause still runs to the end.
  await visitor.events(waiting.id, (j) => j.status === "done");

  const resumed = await admin<{ paused: boolean; since: null }>(
    op,
    "/api/admin/resume",
    { method: "POST" },
  );
  assert.deepEqual(resumed.body, { paused: false, since: null });
  assert.match(
    await (await visitor.fetch("/metrics")).text(),
    /^img2vid_intake_paused 0$/m,
  );
  assert.equal((await visitor.upload(await fixture("rgb.png"))).status, 202);
});

Deno.test("admin: a retry while paused is refused like an upload", async () => {
  await using app = await startApp({
    ADMIN_TOKEN: TOKEN,
    MODEL_DURATION_MS: "60000",
  });
  const visitor = app.client();
  const running = await upload(visitor);
  await visitor.events(running.id, (j) => j.status === "processing");
  const job = await upload(visitor);
  const cancel = await visitor.fetch(`/api/jobs/${job.id}`, {
    method: "DELETE",
  });
  assert.equal(cancel.status, 200);
  await cancel.body?.cancel();
  await admin(app.client(), "/api/admin/pause", { method: "POST" });
  const res = await visitor.json<{ error: { code: string } }>(
    `/api/jobs/${job.id}/retry`,
    { method: "POST" },
  );
  assert.deepEqual([res.status, res.body.error.code], [503, "paused"]);
});

Deno.test("admin: slots with state, job and since; utilisation within 0..1", async () => {
  await using app = await startApp({
    ADMIN_TOKEN: TOKEN,
    MODEL_DURATION_MS: "60000",
  });
  const op = app.client();
  const visitor = app.client();
  const job = await upload(visitor);
  await visitor.events(job.id, (j) => j.status === "processing");
  const { status, body } = await admin<{
    slots: {
      id: string;
      kind: string;
      state: string;
      jobId: string | null;
      since: string;
    }[];
    utilisation: number;
  }>(op, "/api/admin/slots");
  assert.equal(status, 200);
  assert.equal(body.slots.length, 1);
  const [slot] = body.slots;
  assert.deepEqual([slot.kind, slot.state, slot.jobId], [
    "simulated",
    "busy",
    job.id,
  ]);
  assert.ok(Date.parse(slot.since) > 0);
  assert.ok(
    body.utilisation > 0 && body.utilisation <= 1,
    `${body.utilisation}`,
  );
});

Deno.test("admin page: server-rendered token form in the visitor's language, no cookie set, no-store", async () => {
  await using app = await startApp({ ADMIN_TOKEN: TOKEN });
  const client = app.client();
  const res = await client.fetch("/admin", {
    headers: { "accept-language": "en" },
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("set-cookie"), null);
  assert.equal(res.headers.get("cache-control"), "no-store");
  assert.match(
    res.headers.get("content-security-policy")!,
    /default-src 'self'/,
  );
  const html = await res.text();
  assert.match(html, /<label for="admin-token">Operator token<\/label>/);
  assert.match(html, /<input id="admin-token"[^>]*type="password"/);
  assert.match(html, /data-island="AdminPanel"/);
  assert.doesNotMatch(html, new RegExp(TOKEN));
  const zh = await (await client.fetch("/admin?lang=zh-CN")).text();
  assert.match(zh, /<html lang="zh-CN">/);
  assert.match(zh, /运维令牌/);
});
