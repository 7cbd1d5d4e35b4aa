/**
 * The fair order and the waiting caps over HTTP (API.md, "Order: fair, not
 * first come first served", `MAX_WAITING_PER_*`, `TRUST_PROXY`): in process
 * where the address can be simulated, with the real server where it takes a
 * real peer, a real header or a kill -9.
 */
import assert from "node:assert/strict";
import { startApp } from "./_app.ts";
import { FakeClock } from "./_fakes.ts";
import { type ApiJobLike, Client, fixture, startServer } from "./_server.ts";

const SLOW = { MODEL_DURATION_MS: "60000" };

type Upload = (
  client: Client,
  headers?: HeadersInit,
) => Promise<{ status: number; headers: Headers; body: ApiJobLike }>;

/** POST /api/jobs with the test picture, as `curl -F` with extra headers. */
const upload: Upload = async (client, headers = {}) => {
  const form = new FormData();
  form.append(
    "image",
    new File([await fixture("rgb.png")], "rgb.png", { type: "image/png" }),
  );
  return await client.json<ApiJobLike>("/api/jobs", {
    method: "POST",
    body: form,
    headers,
  });
};

/** Uploads one job and waits until the model runs it, so the rest wait. */
async function occupyModel(client: Client, headers: HeadersInit = {}) {
  const { body } = await upload(client, headers);
  await client.events(body.id, (j) => j.status === "processing");
  return body.id;
}

/** Every named job's position, as its owner reads it. */
async function positions(jobs: Map<string, [Client, string]>) {
  const out: Record<string, number | null> = {};
  for (const [name, [client, id]] of jobs) {
    out[name] = (await client.json<ApiJobLike>(`/api/jobs/${id}`)).body
      .position;
  }
  return out;
}

Deno.test("in process: two addresses take turns; the upload's own answer and later reads give the fair position", async () => {
  await using app = await startApp(SLOW);
  const x = app.client("198.51.100.1");
  await occupyModel(x);
  const jobs = new Map<string, [Client, string]>();
  for (const name of ["x1", "x2", "x3"]) {
    const res = await upload(x);
    assert.equal(res.status, 202);
    jobs.set(name, [x, res.body.id]);
  }
  const y = app.client("198.51.100.2");
  const y1 = await upload(y);
  assert.equal(y1.body.position, 2, "a newcomer waits for one job");
  jobs.set("y1", [y, y1.body.id]);
  jobs.set("y2", [y, (await upload(y)).body.id]);
  assert.deepEqual(await positions(jobs), {
    x1: 1,
    y1: 2,
    x2: 3,
    y2: 4,
    x3: 5,
  });
  const x3 = await x.json<ApiJobLike>(`/api/jobs/${jobs.get("x3")![1]}`);
  assert.ok(x3.body.etaSeconds! >= 5 * 60, "the ETA follows the position");
});

Deno.test("in process: 429 too_many_waiting past MAX_WAITING_PER_SESSION and MAX_WAITING_PER_CLIENT, with Retry-After, before the body is read", async () => {
  await using app = await startApp({
    ...SLOW,
    MAX_WAITING_PER_SESSION: "2",
    MAX_WAITING_PER_CLIENT: "3",
  });
  const a = app.client("198.51.100.1");
  await occupyModel(a); // running: not waiting
  assert.equal((await upload(a)).status, 202);
  assert.equal((await upload(a)).status, 202);
  // A body that records whether anyone read it.
  let pulled = false;
  const body = new ReadableStream<Uint8Array>({
    async pull(c) {
      pulled = true;
      c.enqueue(await fixture("rgb.png"));
      c.close();
    },
  }, { highWaterMark: 0 });
  const refused = await a.json<{ error: { code: string } }>("/api/jobs", {
    method: "POST",
    body,
    headers: { "content-type": "image/png" },
  });
  assert.equal(refused.status, 429);
  assert.equal(refused.body.error.code, "too_many_waiting");
  const retry = Number(refused.headers.get("retry-after"));
  assert.ok(retry >= 1 && retry <= 60, `Retry-After ${retry}`);
  assert.equal(pulled, false, "refused before the body was read");

  // The same address, another session: the address's cap (3) is next.
  const b = app.client("198.51.100.1");
  assert.equal((await upload(b)).status, 202);
  const full = await upload(b);
  assert.equal(full.status, 429);
  assert.equal(
    (full.body as unknown as { error: { code: string } }).error.code,
    "too_many_waiting",
  );
  assert.ok(Number(full.headers.get("retry-after")) >= 1);
  // Another address is not refused.
  assert.equal((await upload(app.client("198.51.100.2"))).status, 202);
  // A cancel gives the place back.
  const mine = await a.json<{ jobs: ApiJobLike[] }>("/api/jobs");
  const waiting = mine.body.jobs.find((j) => j.status === "queued")!;
  await a.fetch(`/api/jobs/${waiting.id}`, { method: "DELETE" });
  assert.equal((await upload(a)).status, 202);
  const temps = await Array.fromAsync(Deno.readDir(`${app.dataDir}/tmp`));
  assert.deepEqual(temps.filter((e) => e.name.endsWith(".upload")), []);
});

/**
 * Address P has two sessions (a, c), address Q one (b), each with two
 * pictures uploaded in the order a, b, c, while P's first picture runs. By
 * address: a1 b1 c1 b2 a2 c2 (c1 before b2, uploaded earlier: P joined the
 * line first). All one address, sessions in turn: a1 b1 c1 a2 b2 c2.
 */
async function twoAddresses(url: string) {
  const p = { "x-forwarded-for": "203.0.113.1" };
  const q = { "x-forwarded-for": "203.0.113.2" };
  const a = new Client(url), c = new Client(url), b = new Client(url);
  const running = await occupyModel(a, p);
  const jobs = new Map<string, [Client, string]>();
  for (
    const [name, client, headers] of [
      ["a1", a, p],
      ["a2", a, p],
      ["b1", b, q],
      ["b2", b, q],
      ["c1", c, p],
      ["c2", c, p],
    ] as const
  ) {
    const res = await upload(client, headers);
    assert.equal(res.status, 202, `${name}: ${JSON.stringify(res.body)}`);
    jobs.set(name, [client, res.body.id]);
  }
  return Object.assign(jobs, { running });
}

const BY_ADDRESS = { a1: 1, b1: 2, c1: 3, b2: 4, a2: 5, c2: 6 };

Deno.test("real server, TRUST_PROXY=1: two X-Forwarded-For addresses take turns, then sessions within one", async () => {
  await using server = await startServer({ ...SLOW, TRUST_PROXY: "1" });
  assert.deepEqual(
    await positions(await twoAddresses(server.url)),
    BY_ADDRESS,
  );
});

Deno.test("real server, TRUST_PROXY=0: a forged X-Forwarded-For changes nothing (one address, its sessions take turns)", async () => {
  await using server = await startServer({
    ...SLOW,
    TRUST_PROXY: "0",
    MAX_WAITING_PER_CLIENT: "6",
  });
  const jobs = await twoAddresses(server.url);
  assert.deepEqual(await positions(jobs), {
    a1: 1,
    b1: 2,
    c1: 3,
    a2: 4,
    b2: 5,
    c2: 6,
  });
  // The forged addresses share the one address's cap.
  const refused = await upload(new Client(server.url), {
    "x-forwarded-for": "203.0.113.99",
  });
  assert.equal(refused.status, 429);
});

Deno.test("real server: kill -9 in the middle of a fair line; after the restart the same order and positions", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "img2vid-fair-crash-" });
  const env = { ...SLOW, TRUST_PROXY: "1", LEASE_MS: "600" };
  let server = await startServer(env, dataDir);
  try {
    const jobs = await twoAddresses(server.url);
    assert.deepEqual(await positions(jobs), BY_ADDRESS);
    const [a] = jobs.get("a1")!;
    const cut = await a.json<ApiJobLike>(`/api/jobs/${jobs.running}`);
    await server.stop("SIGKILL");
    server = await startServer(env, dataDir);
    for (const [client] of jobs.values()) client.base = server.url;
    // The cut job goes back first and runs again (a new start: until its
    // lease runs out the record still says processing from before the kill);
    // the line behind it is unchanged.
    await a.events(
      jobs.running,
      (j) => j.status === "processing" && j.startedAt !== cut.body.startedAt,
    );
    assert.deepEqual(await positions(jobs), BY_ADDRESS);
  } finally {
    await server.stop("SIGKILL");
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("in process: one session's uploads in the same millisecond (a standing fake clock) keep their upload order in the line and in its list", async () => {
  // The fake clock stands still: every upload is made in the same millisecond.
  await using app = await startApp(SLOW, { clock: new FakeClock() });
  const x = app.client("198.51.100.1");
  const running = await occupyModel(x);
  const uploaded: ApiJobLike[] = [];
  for (let i = 0; i < 8; i++) {
    const res = await upload(x);
    assert.equal(res.status, 202);
    uploaded.push(res.body);
  }
  const ids = uploaded.map((j) => j.id);
  const listed = (await x.json<{ jobs: ApiJobLike[] }>("/api/jobs")).body.jobs;
  assert.deepEqual(
    listed.map((j) => j.id),
    [...ids].reverse().concat(running),
    "listed newest first",
  );
  const waiting = listed.filter((j) => j.id !== running);
  assert.deepEqual(
    waiting.map((j) => j.position),
    [8, 7, 6, 5, 4, 3, 2, 1],
    "run in upload order",
  );
});
