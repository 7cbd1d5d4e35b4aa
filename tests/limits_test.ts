/**
 * The per-client limits of API.md that need no model: uploads per minute per
 * client address, the in-flight caps (503 `busy`, 429 per client), the idle
 * cut-off of a stalled upload (408 `upload_timeout`), event streams per
 * client, and `TRUST_PROXY`. In process where a peer address can be
 * pretended; the real server where a socket is the point.
 */
import assert from "node:assert/strict";
import { type RateWindow, takeSlots } from "../queue/rate.ts";
import { startApp, type TestApp } from "./_app.ts";
import { Client, fixture, startServer } from "./_server.ts";

const BOUNDARY = "limitsTestBoundary";
const MULTIPART = `multipart/form-data; boundary=${BOUNDARY}`;
const encoder = new TextEncoder();
const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
/** A failure bound for what should take a fraction of a second. */
const BOUND_MS = 20_000;

const partHead = () =>
  encoder.encode(
    `--${BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n` +
      `Content-Type: image/png\r\n\r\n`,
  );
const partTail = () => encoder.encode(`\r\n--${BOUNDARY}--\r\n`);
const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, (at += p.length) - p.length);
  return out;
};

/**
 * A request body that gives `first` when the server first reads, then holds
 * until {@link release} (then gives `rest` and ends) or until cancelled. It
 * yields nothing before it is read (high-water mark 0), so `pulls` says
 * whether the server read any of it.
 */
function heldBody(first: Uint8Array, rest: Uint8Array | null = null) {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let inBody!: () => void;
  const state = {
    pulls: 0,
    cancelled: false,
    /** Resolves when the server asks for more than `first`. */
    reading: new Promise<void>((r) => (inBody = r)),
    release,
    stream: new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (state.pulls++ === 0) return controller.enqueue(first);
        inBody();
        await released;
        if (state.cancelled) return;
        if (rest) controller.enqueue(rest);
        controller.close();
      },
      cancel() {
        state.cancelled = true;
        release();
      },
    }, { highWaterMark: 0 }),
  };
  return state;
}

/** A multipart upload of `png` whose last bytes wait for `release()`. */
function heldUpload(png: Uint8Array) {
  const cut = PNG_SIGNATURE.length;
  return heldBody(
    concat(partHead(), png.subarray(0, cut)),
    concat(png.subarray(cut), partTail()),
  );
}

const post = (client: Client, body: ReadableStream<Uint8Array>) =>
  client.fetch("/api/jobs", {
    method: "POST",
    body,
    headers: { "content-type": MULTIPART },
  });

async function assertRefused(
  res: Response,
  status: number,
  code: string,
): Promise<number> {
  const body = await res.json();
  assert.equal(res.status, status, JSON.stringify(body));
  assert.equal(body.error.code, code);
  const retry = Number(res.headers.get("retry-after"));
  assert.ok(retry >= 1, `Retry-After ${res.headers.get("retry-after")}`);
  return retry;
}

/** `promise`, or a failure after {@link BOUND_MS}: a bound, not a wait. */
async function bounded<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what}: no answer in ${BOUND_MS} ms`)),
      BOUND_MS,
    );
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

async function tmpFiles(dataDir: string): Promise<string[]> {
  return (await Array.fromAsync(Deno.readDir(`${dataDir}/tmp`))).map((e) =>
    e.name
  );
}

Deno.test("uploads per minute per client: cookie-less uploads from one address share the count; another address has its own", async () => {
  await using app = await startApp({ UPLOADS_PER_MINUTE_PER_CLIENT: "2" });
  const png = await fixture("rgb.png");
  for (let i = 0; i < 2; i++) {
    // A new client each time: a new session, as a script without cookies.
    assert.equal((await app.client("203.0.113.7").upload(png)).status, 202);
  }
  const third = heldUpload(png);
  const retry = await assertRefused(
    await post(app.client("203.0.113.7"), third.stream),
    429,
    "rate_limited",
  );
  assert.ok(retry <= 60, `Retry-After ${retry} is within the minute`);
  assert.equal(third.pulls, 0, "refused before a byte of the body was read");
  assert.equal((await app.client("203.0.113.8").upload(png)).status, 202);
});

Deno.test("an upload refused by its session's count uses none of its address's, and the reverse", async () => {
  using kv = await Deno.openKv(":memory:");
  const minute = 29_000_000 * 60_000;
  const upload = (session: string): RateWindow[] => [
    { kind: "upload", who: session, perMinute: 1 },
    { kind: "client_upload", who: "203.0.113.7", perMinute: 2 },
  ];
  assert.equal(await takeSlots(kv, upload("s"), minute), null);
  assert.deepEqual(await takeSlots(kv, upload("s"), minute + 45_000), {
    index: 0,
    waitMs: 15_000,
  });
  assert.equal(await takeSlots(kv, upload("t"), minute), null, "2nd of 2");
  assert.deepEqual(await takeSlots(kv, upload("u"), minute), {
    index: 1,
    waitMs: 60_000,
  });
  // "u" was refused by the address: its own minute is untouched.
  assert.equal(
    await takeSlots(kv, [upload("u")[0]], minute),
    null,
  );
});

Deno.test("X-Forwarded-For: ignored with TRUST_PROXY=0, the proxy's entry used with TRUST_PROXY=1", async () => {
  const png = await fixture("rgb.png");
  const from = (app: TestApp, forwarded: string) =>
    app.client("10.0.0.1").json("/api/jobs", {
      method: "POST",
      body: (() => {
        const f = new FormData();
        f.append("image", new File([png], "a.png", { type: "image/png" }));
        return f;
      })(),
      headers: { "x-forwarded-for": forwarded },
    });
  {
    await using app = await startApp({ UPLOADS_PER_MINUTE_PER_CLIENT: "1" });
    assert.equal((await from(app, "198.51.100.1")).status, 202);
    // A forged header from the same peer is the same client.
    assert.equal((await from(app, "198.51.100.2")).status, 429);
  }
  {
    await using app = await startApp({
      UPLOADS_PER_MINUTE_PER_CLIENT: "1",
      TRUST_PROXY: "1",
    });
    assert.equal((await from(app, "198.51.100.1")).status, 202);
    assert.equal((await from(app, "198.51.100.2")).status, 202);
    // Left of the proxy's entry is whatever the client wrote.
    assert.equal((await from(app, "192.0.2.9, 198.51.100.1")).status, 429);
  }
});

Deno.test("the real server: a forged X-Forwarded-For does not dodge the per-client rate", async () => {
  await using server = await startServer({
    UPLOADS_PER_MINUTE_PER_CLIENT: "1",
  });
  const png = await fixture("rgb.png");
  const forged = async (address: string) => {
    const form = new FormData();
    form.append("image", new File([png], "a.png", { type: "image/png" }));
    return await new Client(server.url).json("/api/jobs", {
      method: "POST",
      body: form,
      headers: { "x-forwarded-for": address },
    });
  };
  assert.equal((await forged("198.51.100.1")).status, 202);
  const second = await forged("198.51.100.2");
  assert.equal(second.status, 429);
  assert.equal(
    (second.body as { error: { code: string } }).error.code,
    "rate_limited",
  );
});

Deno.test("uploads in flight: 429 past the client's share, 503 busy past the process's, before the body; places come back", async () => {
  await using app = await startApp({
    MAX_UPLOADS_IN_FLIGHT: "2",
    MAX_UPLOADS_IN_FLIGHT_PER_CLIENT: "1",
  });
  const png = await fixture("rgb.png");
  const a = heldUpload(png);
  const aDone = post(app.client("203.0.113.1"), a.stream);
  await a.reading;

  const again = heldUpload(png);
  await assertRefused(
    await post(app.client("203.0.113.1"), again.stream),
    429,
    "rate_limited",
  );
  assert.equal(again.pulls, 0, "refused before its body was read");

  const b = heldUpload(png);
  const bDone = post(app.client("203.0.113.2"), b.stream);
  await b.reading;
  const third = heldUpload(png);
  await assertRefused(
    await post(app.client("203.0.113.3"), third.stream),
    503,
    "busy",
  );
  assert.equal(third.pulls, 0, "refused before its body was read");

  a.release();
  b.release();
  assert.equal((await aDone).status, 202);
  assert.equal((await bDone).status, 202);
  assert.equal((await app.client("203.0.113.3").upload(png)).status, 202);
  assert.equal((await app.client("203.0.113.1").upload(png)).status, 202);
});

for (
  const [kind, contentType, first] of [
    ["raw body", "image/png", new Uint8Array(PNG_SIGNATURE)],
    ["multipart", MULTIPART, concat(partHead(), new Uint8Array(PNG_SIGNATURE))],
    [
      "multipart, stalled in the part's head",
      MULTIPART,
      partHead().subarray(
        0,
        20,
      ),
    ],
  ] as const
) {
  Deno.test(`a stalled upload (${kind}) gets 408 upload_timeout, its body cancelled, nothing on disk, its place back`, async () => {
    await using app = await startApp({
      UPLOAD_IDLE_SECONDS: "0.2",
      MAX_UPLOADS_IN_FLIGHT_PER_CLIENT: "1",
    });
    const stalled = heldBody(first);
    // Waiting on the answer, not on a timer: it comes when the idle time ends.
    const res = await bounded(
      app.client("203.0.113.5").fetch("/api/jobs", {
        method: "POST",
        body: stalled.stream,
        headers: { "content-type": contentType },
      }),
      "the stalled upload",
    );
    const body = await res.json();
    assert.equal(res.status, 408);
    assert.equal(body.error.code, "upload_timeout");
    assert.equal(res.headers.get("connection"), "close");
    assert.ok(stalled.cancelled, "the body is cancelled");
    assert.deepEqual(await tmpFiles(app.dataDir), []);
    assert.equal(
      (await app.client("203.0.113.5").upload(await fixture("rgb.png")))
        .status,
      202,
      "the in-flight place was given back",
    );
  });
}

Deno.test("event streams per client: 429 past MAX_STREAMS_PER_CLIENT, per address, and a closed stream frees its place", async () => {
  await using app = await startApp({
    MAX_STREAMS_PER_CLIENT: "2",
    MODEL_DURATION_MS: "600000",
  });
  const owner = app.client("203.0.113.9");
  const { id } = (await owner.upload(await fixture("rgb.png"))).body as {
    id: string;
  };
  const open = async (client: Client) => {
    const res = await client.fetch(`/api/jobs/${id}/events`);
    if (res.ok) {
      const reader = res.body!.getReader();
      await reader.read(); // the first event: the stream is live
      return { res, close: () => reader.cancel() };
    }
    return { res, close: () => res.body?.cancel() };
  };
  const first = await open(owner);
  const second = await open(owner);
  assert.equal(first.res.status, 200);
  assert.equal(second.res.status, 200);
  const third = await open(owner);
  await assertRefused(third.res, 429, "rate_limited");

  // The same session from another address has its own count.
  const elsewhere = app.client("203.0.113.10");
  elsewhere.cookie = owner.cookie;
  const there = await open(elsewhere);
  assert.equal(there.res.status, 200);

  await first.close();
  const again = await open(owner);
  assert.equal(again.res.status, 200, "the closed stream's place is free");
  for (const s of [second, there, again]) await s.close();
});

Deno.test("the real server: a stalled upload gets 408 and Connection: close, and leaves no file", async () => {
  await using server = await startServer({ UPLOAD_IDLE_SECONDS: "0.2" });
  const { hostname, port } = new URL(server.url);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  const head = await stalledUpload(conn, hostname);
  conn.close();
  assert.match(head, /^HTTP\/1\.1 408 /);
  assert.match(head, /\r\nconnection: close\r\n/i);
  assert.match(head, /"upload_timeout"/);
  assert.deepEqual(await tmpFiles(server.dataDir), []);
});

/** Three hundred at once, as in the issue; more than any cap. */
const STALLED = 300;

for (
  const [caps, env] of [
    ["default caps", {}],
    ["caps raised to let all in", {
      MAX_UPLOADS_IN_FLIGHT: String(STALLED),
      MAX_UPLOADS_IN_FLIGHT_PER_CLIENT: String(STALLED),
      UPLOADS_PER_MINUTE_PER_CLIENT: String(2 * STALLED),
    }],
  ] as const
) {
  Deno.test(`${STALLED} stalled raw-socket uploads (${caps}): each answered 408, 429 or 503, nothing left on disk, the server still serves`, async () => {
    await using server = await startServer({
      UPLOAD_IDLE_SECONDS: "0.5",
      ...env,
    });
    const { hostname, port } = new URL(server.url);
    const heads = await Promise.all(
      Array.from({ length: STALLED }, async () => {
        const conn = await Deno.connect({ hostname, port: Number(port) });
        try {
          return await stalledUpload(conn, hostname);
        } finally {
          conn.close();
        }
      }),
    );
    const statuses = new Map<string, number>();
    for (const h of heads) {
      const status = /^HTTP\/1\.1 (\d{3}) /.exec(h)?.[1] ?? "closed";
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
    const seen = JSON.stringify(Object.fromEntries(statuses));
    for (const s of statuses.keys()) {
      assert.ok(["408", "429", "503", "closed"].includes(s), seen);
    }
    assert.ok((statuses.get("408") ?? 0) > 0, `some timed out: ${seen}`);
    if ("MAX_UPLOADS_IN_FLIGHT" in env) {
      assert.equal(statuses.get("408"), STALLED, seen);
    }
    assert.deepEqual(await tmpFiles(server.dataDir), []);
    const client = new Client(server.url);
    assert.equal((await client.json("/healthz")).status, 200);
    assert.equal((await client.upload(await fixture("rgb.png"))).status, 202);
  });
}

/**
 * Sends an upload's head and the first bytes of its image, then nothing;
 * returns what the server answers: its head and as much of its body as
 * arrives before the answer is whole or the server closes.
 */
async function stalledUpload(conn: Deno.Conn, host: string): Promise<string> {
  const body = concat(partHead(), new Uint8Array(PNG_SIGNATURE));
  await conn.write(concat(
    encoder.encode(
      `POST /api/jobs HTTP/1.1\r\nHost: ${host}\r\nContent-Type: ${MULTIPART}\r\n` +
        `Content-Length: 100000\r\n\r\n`,
    ),
    body,
  ));
  const decoder = new TextDecoder();
  const buf = new Uint8Array(4096);
  let text = "";
  const bound = setTimeout(() => conn.close(), BOUND_MS);
  try {
    for (;;) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) return text;
      text += decoder.decode(buf.subarray(0, n), { stream: true });
      const end = text.indexOf("\r\n\r\n");
      const length = /\r\ncontent-length: (\d+)/i.exec(text)?.[1];
      if (end >= 0 && length && text.length >= end + 4 + Number(length)) {
        return text;
      }
    }
  } finally {
    clearTimeout(bound);
  }
}
