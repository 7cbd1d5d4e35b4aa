/**
 * `/openapi.json` (API.md "Operations") against the app itself: every route
 * the app serves is in the document, the document is valid OpenAPI 3.1, and
 * real answers of every operation, errors included, match the schemas the
 * document gives for their status (checked with zod's own
 * `z.fromJSONSchema`, so no other validator for the responses).
 */
import assert from "node:assert/strict";
import { Validator } from "@seriousme/openapi-schema-validator";
import { z } from "zod";
import { newJobId } from "../queue/ids.ts";
import { beginCogPrediction } from "../queue/models/cog_state.ts";
import { cogWebhookUrl } from "../routes/webhooks.ts";
import { loadKey } from "../service.ts";
import { FakeClock } from "./_fakes.ts";
import { APP_ORIGIN, runToEnd, startApp, type TestApp } from "./_app.ts";
import { fixture } from "./_server.ts";

interface Documented {
  description: string;
  headers?: Record<string, { required?: boolean }>;
  content?: Record<string, { schema?: unknown }>;
}
interface Operation {
  operationId?: string;
  parameters?: { name: string; in: string }[];
  responses: Record<string, Documented>;
}
interface Document {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components?: { schemas?: Record<string, unknown> };
}

/**
 * Routes the app serves that the document leaves out, each with its reason.
 * `app.use` middleware (`ALL /*`) is not a route and is skipped.
 */
const NOT_DOCUMENTED: Record<string, string> = {
  "GET /openapi.json": "the document itself (FastAPI leaves it out too)",
  "GET /docs": "the page over the document",
  "GET /docs/init.js": "the docs page's start-up script, a static file",
  "GET /docs/:name": "Swagger UI's script and style, static files",
  "GET /assets/:name": "the page's script, style and icon, static files",
  "GET /favicon.ico": "the site's icon, a static file",
  "ALL /api/webhooks/*":
    "404 for anything else under /api/webhooks, before the session check",
  "ALL /api/admin/*":
    "the operators' token check and no-store (middleware), not a route",
};

/** Hono's `/api/jobs/:id` as OpenAPI's `/api/jobs/{id}` (a `{regex}` dropped). */
const openApiPath = (path: string) =>
  path.split("/").map((s) =>
    s.startsWith(":") ? `{${s.slice(1).split("{")[0]}}` : s
  )
    .join("/");

async function documentOf(app: TestApp): Promise<Document> {
  const res = await app.client().fetch("/openapi.json");
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
  return await res.json();
}

/** A schema of the document as zod, its `#/components/schemas/…` refs resolved. */
function zodOf(doc: Document, schema: unknown): z.ZodType {
  const text = JSON.stringify({
    ...(schema as object),
    $defs: doc.components?.schemas ?? {},
  }).replaceAll('"#/components/schemas/', '"#/$defs/');
  return z.fromJSONSchema(JSON.parse(text));
}

const essence = (type: string) => type.split(";")[0].trim().toLowerCase();
const normal = (type: string) => type.replaceAll(" ", "").toLowerCase();

/**
 * Checks real answers against the document: the status is listed for the
 * operation, its required headers are sent, its content type is one of the
 * listed ones, and a JSON body matches the listed schema.
 */
class Checker {
  /** `method path status` of every answer checked. */
  readonly seen = new Set<string>();
  constructor(readonly doc: Document) {}

  async check(
    method: string,
    path: string,
    res: Response,
  ): Promise<unknown> {
    const where = `${method.toUpperCase()} ${path} → ${res.status}`;
    const operation = this.doc.paths[path]?.[method];
    assert.ok(operation, `${method.toUpperCase()} ${path} is in the document`);
    const documented = operation.responses[String(res.status)];
    if (!documented) {
      const body = await res.text();
      assert.fail(`${where} is not in the document (${body.slice(0, 200)})`);
    }
    this.seen.add(`${method} ${path} ${res.status}`);
    for (const [name, header] of Object.entries(documented.headers ?? {})) {
      if (header.required) {
        assert.ok(res.headers.has(name), `${where} sends ${name}`);
      }
    }
    if (!documented.content) {
      assert.equal(await res.text(), "", `${where} has no body`);
      return null;
    }
    const type = res.headers.get("content-type") ?? "";
    const media = Object.keys(documented.content).find((m) =>
      m.includes(";")
        ? normal(m) === normal(type)
        : essence(m) === essence(type)
    );
    assert.ok(
      media,
      `${where}: ${type} is one of ${Object.keys(documented.content)}`,
    );
    if (!/\bjson$/.test(essence(media))) {
      await res.body?.cancel();
      return null;
    }
    const body = await res.json();
    const parsed = zodOf(this.doc, documented.content[media].schema)
      .safeParse(body);
    assert.ok(
      parsed.success,
      `${where}: ${JSON.stringify(body)}\n${
        parsed.error && z.prettifyError(parsed.error)
      }`,
    );
    return body;
  }
}

Deno.test("openapi: every route the app serves is in /openapi.json, and every operation there is served", async () => {
  await using t = await startApp();
  const doc = await documentOf(t);
  const routes = t.service.app!.routes.filter((r) =>
    !(r.method === "ALL" && r.path === "/*")
  );
  const exceptions = new Set<string>();
  for (const { method, path } of routes) {
    const route = `${method} ${path}`;
    if (route in NOT_DOCUMENTED) {
      exceptions.add(route);
      continue;
    }
    assert.ok(
      doc.paths[openApiPath(path)]?.[method.toLowerCase()],
      `${route} is in /openapi.json as ${method} ${openApiPath(path)}`,
    );
  }
  assert.deepEqual(
    [...exceptions].sort(),
    Object.keys(NOT_DOCUMENTED).sort(),
    "every exception is still a route of the app",
  );
  const served = new Set(
    routes.map((r) => `${r.method.toLowerCase()} ${openApiPath(r.path)}`),
  );
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const method of Object.keys(item)) {
      assert.ok(served.has(`${method} ${path}`), `${method} ${path} is served`);
    }
  }
});

Deno.test("openapi: /openapi.json is a valid OpenAPI 3.1 document with the contract's errors", async () => {
  await using t = await startApp();
  const doc = await documentOf(t);
  assert.match(doc.openapi, /^3\.1\.\d+$/);
  // Against the official OpenAPI 3.1 schema, its $refs resolved.
  const result = await new Validator().validate(
    doc as unknown as Record<string, unknown>,
  );
  assert.deepEqual(result, { valid: true });

  const ids = new Set<string>();
  for (const [path, item] of Object.entries(doc.paths)) {
    const inPath = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
    for (const [method, op] of Object.entries(item)) {
      const where = `${method.toUpperCase()} ${path}`;
      assert.ok(
        op.operationId && !ids.has(op.operationId),
        `${where}: a unique operationId`,
      );
      ids.add(op.operationId);
      assert.deepEqual(
        (op.parameters ?? []).filter((p) => p.in === "path").map((p) => p.name)
          .sort(),
        inPath,
        `${where} declares its path parameters`,
      );
      // Every error is `{"error": {"code", "message"}}`, its codes listed.
      for (const [status, response] of Object.entries(op.responses)) {
        const json = response.content?.["application/json"]?.schema as
          | { properties?: { error?: unknown } }
          | undefined;
        if (Number(status) >= 400 && json?.properties?.error) {
          const codes = zodOf(doc, json);
          assert.ok(
            !codes.safeParse({ error: { code: "no_such_code", message: "" } })
              .success,
            `${where} ${status} lists its codes`,
          );
        }
      }
    }
  }
  // API.md's table for uploads, code by code.
  const upload = doc.paths["/api/jobs"].post.responses;
  const table: Record<string, string[]> = {
    400: ["bad_request"],
    403: ["forbidden_origin"],
    413: ["too_large"],
    415: ["unsupported_type"],
    422: ["invalid_image"],
    408: ["upload_timeout"],
    429: ["queue_full", "rate_limited", "too_many_waiting"],
    503: ["busy", "paused"],
    507: ["insufficient_storage"],
  };
  for (const [status, codes] of Object.entries(table)) {
    assert.ok(upload[status], `POST /api/jobs documents ${status}`);
    const schema = zodOf(
      doc,
      upload[status].content!["application/json"].schema,
    );
    for (const code of codes) {
      assert.ok(
        schema.safeParse({ error: { code, message: "A sentence." } }).success,
        `POST /api/jobs documents ${status} ${code}`,
      );
    }
  }
});

Deno.test("openapi: real answers of every operation, errors included, match the document", async () => {
  const clock = new FakeClock(Date.now());
  const token = "operator-secret-token-0123";
  await using t = await startApp({
    MODEL_DURATION_MS: "1000",
    ADMIN_TOKEN: token,
  }, { clock });
  const doc = await documentOf(t);
  const api = new Checker(doc);
  const owner = t.client();
  const stranger = t.client();
  const png = await fixture("rgb.png");
  const form = (field = "image") => {
    const body = new FormData();
    body.append(field, new File([png], "photo.png", { type: "image/png" }));
    return body;
  };

  await api.check("get", "/healthz", await owner.fetch("/healthz"));
  await api.check("get", "/metrics", await owner.fetch("/metrics"));
  await api.check("get", "/", await owner.fetch("/?lang=en"));

  // Uploads: multipart and raw, and refusals.
  const job = await api.check(
    "post",
    "/api/jobs",
    await owner.fetch("/api/jobs", { method: "POST", body: form() }),
  ) as { id: string };
  const second = await api.check(
    "post",
    "/api/jobs",
    await owner.fetch("/api/jobs", {
      method: "POST",
      headers: { "content-type": "image/png" },
      body: png,
    }),
  ) as { id: string };
  for (
    const init of <RequestInit[]> [
      { body: form("picture") }, // 400: no image field
      { headers: { "content-type": "image/png" }, body: "not a picture" }, // 415
      { headers: { origin: "https://elsewhere.example" }, body: form() }, // 403
    ]
  ) {
    const res = await owner.fetch("/api/jobs", { method: "POST", ...init });
    assert.ok(res.status >= 400, `refused: ${res.status}`);
    await api.check("post", "/api/jobs", res);
  }

  // The browser's own form post ends on a page.
  await api.check(
    "post",
    "/api/jobs",
    await owner.fetch("/api/jobs", {
      method: "POST",
      headers: { accept: "text/html" },
      body: form(),
    }),
  );

  await api.check("get", "/api/jobs", await owner.fetch("/api/jobs"));
  await api.check("get", "/api/line", await owner.fetch("/api/line"));
  await api.check(
    "get",
    "/api/jobs/{id}",
    await owner.fetch(`/api/jobs/${job.id}`),
  );
  await api.check(
    "get",
    "/api/jobs/{id}",
    await stranger.fetch(`/api/jobs/${job.id}`),
  );
  await api.check("get", "/api/jobs/{id}", await owner.fetch("/api/jobs/nope"));

  // Cancel the second while the first holds the model (the clock stands still).
  await api.check(
    "delete",
    "/api/jobs/{id}",
    await owner.fetch(`/api/jobs/${second.id}`, { method: "DELETE" }),
  );
  const retried = await api.check(
    "post",
    "/api/jobs/{id}/retry",
    await owner.fetch(`/api/jobs/${second.id}/retry`, { method: "POST" }),
  ) as { id: string };
  // An operator cancels it while it waits (the clock stands still).
  const bearer = { authorization: `Bearer ${token}` };
  await api.check(
    "delete",
    "/api/admin/jobs/{id}",
    await stranger.fetch(`/api/admin/jobs/${retried.id}`, {
      method: "DELETE",
      headers: bearer,
    }),
  );
  assert.equal((await runToEnd(owner, clock, job.id)).status, "done");
  await api.check(
    "post",
    "/api/jobs/{id}/retry",
    await owner.fetch(`/api/jobs/${job.id}/retry`, { method: "POST" }),
  );

  // Events: every event's data is a Job of the document.
  const stream = await owner.fetch(`/api/jobs/${job.id}/events`);
  const text = await stream.clone().text();
  await api.check("get", "/api/jobs/{id}/events", stream);
  const events = [...text.matchAll(/^id: (.*)\ndata: (.*)$/gm)];
  assert.ok(events.length > 0, text);
  const jobSchema = zodOf(doc, { $ref: "#/components/schemas/Job" });
  for (const [, , data] of events) jobSchema.parse(JSON.parse(data));
  await api.check(
    "get",
    "/api/jobs/{id}/events",
    await owner.fetch(`/api/jobs/${job.id}/events`, {
      headers: { "last-event-id": events.at(-1)![1] },
    }),
  );
  await api.check(
    "get",
    "/api/jobs/{id}/events",
    await stranger.fetch(`/api/jobs/${job.id}/events`),
  );

  // The video, through its short-lived url.
  const done = await api.check(
    "get",
    "/api/jobs/{id}",
    await owner.fetch(`/api/jobs/${job.id}`),
  ) as { video: { url: string } };
  const url = done.video.url;
  await api.check("get", "/media/{id}", await owner.fetch(url));
  await api.check(
    "get",
    "/media/{id}",
    await owner.fetch(url, { headers: { range: "bytes=0-9" } }),
  );
  await api.check(
    "get",
    "/media/{id}",
    await owner.fetch(url, { headers: { range: "bytes=999999999-" } }),
  );
  await api.check("get", "/media/{id}", await stranger.fetch(url));
  await api.check(
    "get",
    "/media/{id}",
    await owner.fetch(url.replace(/sig=[^&]+/, "sig=x")),
  );

  // Playback: a grant, its one-time segment, and refusals.
  const grant = await api.check(
    "post",
    "/api/jobs/{id}/playback",
    await owner.fetch(`/api/jobs/${job.id}/playback`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ eme: false }),
    }),
  ) as { segments: string[] };
  const fetchDest = { "sec-fetch-dest": "empty" };
  for (let i = 0; i < 2; i++) { // 200, then 403: used already
    await api.check(
      "get",
      "/media/{id}/segment",
      await owner.fetch(grant.segments[0], { headers: fetchDest }),
    );
  }
  await api.check(
    "get",
    "/media/{id}/segment",
    await owner.fetch(`/media/${job.id}/segment?p=x`, { headers: fetchDest }),
  );
  await api.check(
    "post",
    "/api/jobs/{id}/playback",
    await owner.fetch(`/api/jobs/${second.id}/playback`, { method: "POST" }),
  );

  await api.check("get", "/jobs/{id}", await owner.fetch(`/jobs/${job.id}`));
  await api.check("get", "/jobs/{id}", await stranger.fetch(`/jobs/${job.id}`));

  // The operators' API, with and without the token.
  await api.check("get", "/admin", await stranger.fetch("/admin?lang=zh"));
  await api.check(
    "get",
    "/api/admin/jobs",
    await stranger.fetch("/api/admin/jobs?status=queued", { headers: bearer }),
  );
  await api.check(
    "get",
    "/api/admin/jobs",
    await stranger.fetch("/api/admin/jobs?status=lost", { headers: bearer }),
  );
  await api.check(
    "get",
    "/api/admin/jobs",
    await stranger.fetch("/api/admin/jobs"),
  );
  await api.check(
    "get",
    "/api/admin/slots",
    await stranger.fetch("/api/admin/slots", { headers: bearer }),
  );
  // Cancel any job: 409 (ended), 404 (no such id).
  for (const id of [job.id, "nope"]) {
    await api.check(
      "delete",
      "/api/admin/jobs/{id}",
      await stranger.fetch(`/api/admin/jobs/${id}`, {
        method: "DELETE",
        headers: bearer,
      }),
    );
  }
  await api.check(
    "get",
    "/api/admin/pause",
    await stranger.fetch("/api/admin/pause", { headers: bearer }),
  );
  await api.check(
    "post",
    "/api/admin/pause",
    await stranger.fetch("/api/admin/pause", {
      method: "POST",
      headers: bearer,
    }),
  );
  await api.check(
    "post",
    "/api/jobs",
    await owner.fetch("/api/jobs", { method: "POST", body: form() }),
  );
  await api.check(
    "post",
    "/api/admin/resume",
    await stranger.fetch("/api/admin/resume", {
      method: "POST",
      headers: bearer,
    }),
  );

  // An ended job is deleted, its video with it.
  await api.check(
    "delete",
    "/api/jobs/{id}",
    await owner.fetch(`/api/jobs/${job.id}`, { method: "DELETE" }),
  );
  await api.check("get", "/media/{id}", await owner.fetch(url));

  // Cog's webhook, for a prediction this service sent.
  const predicted = newJobId(clock.now());
  await beginCogPrediction(
    t.service.kv,
    predicted,
    "http://cog.invalid/",
    clock.now(),
  );
  const hook = new URL(
    await cogWebhookUrl(await loadKey(t.service.kv), APP_ORIGIN, predicted),
  );
  const webhook = (search: string) =>
    stranger.fetch(`${hook.pathname}${search}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ status: "processing", logs: " 10%|#" }),
    });
  await api.check("post", "/api/webhooks/cog/{id}", await webhook(hook.search));
  await api.check("post", "/api/webhooks/cog/{id}", await webhook("?secret=x"));

  // Each operation was seen answering with success at least once.
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const method of Object.keys(item)) {
      assert.ok(
        [...api.seen].some((s) =>
          new RegExp(`^${method} ${path.replace(/[{}]/g, "\\$&")} 2\\d\\d$`)
            .test(s)
        ),
        `a success of ${method.toUpperCase()} ${path} was checked`,
      );
    }
  }
});
