/** Issue 6 on the server: playback grants, one-time sealed segments, what an attacker gets. */
import assert from "node:assert/strict";
import { runFfmpeg } from "../media/clip.ts";
import { importKey } from "../media/seal.ts";
import { openSealed } from "../shared/seal.ts";
import { decodeBase64Url } from "../shared/base64url.ts";
import { MemoryStore } from "../media/memory_store.ts";
import type { Store } from "../media/store.ts";
import { keys } from "../queue/keys.ts";
import { FakeClock } from "./_fakes.ts";
import { runToEnd, startApp } from "./_app.ts";
import { type Client, fixture } from "./_server.ts";
import { readStored } from "./_stores.ts";

interface Grant {
  type: string;
  segments: string[];
  key: string;
  iv: string;
  expiresAt: string;
}
const FETCH = { "sec-fetch-dest": "empty", "sec-fetch-site": "same-origin" };

Deno.test("playback: the owner gets a sealed clip once; others, replays, tabs and forgeries get nothing", async (t) => {
  await using server = await startApp({ MODEL_DURATION_MS: "300" });
  const owner = server.client();
  const { id } = (await owner.upload(await fixture("rgb.png"))).body as {
    id: string;
  };
  await owner.events(id, (j) => j.status === "done");
  const grantFor = async (client: Client) => {
    const res = await client.json<Grant>(`/api/jobs/${id}/playback`, {
      method: "POST",
    });
    assert.equal(res.status, 201);
    return res.body;
  };

  await t.step(
    "the grant: an MSE type, one segment address valid about a minute, a key",
    async () => {
      const grant = await grantFor(owner);
      assert.match(grant.type, /^video\/mp4; codecs="avc1\.[0-9a-f]{6}"$/);
      assert.equal(grant.segments.length, 1);
      const left = Date.parse(grant.expiresAt) - Date.now();
      assert.ok(left > 30_000 && left <= 60_000, `${left} ms`);
      assert.equal(decodeBase64Url(grant.key)!.length, 32);
    },
  );

  await t.step(
    "the segment: sealed bytes that open to the fragmented MP4, and do not parse as video",
    async () => {
      const grant = await grantFor(owner);
      const res = await owner.fetch(grant.segments[0], { headers: FETCH });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("cache-control"), "private, no-store");
      assert.equal(
        res.headers.get("cross-origin-resource-policy"),
        "same-origin",
      );
      assert.equal(res.headers.get("x-content-type-options"), "nosniff");
      const sealed = new Uint8Array(await res.arrayBuffer());
      const key = await importKey(decodeBase64Url(grant.key)!, "decrypt");
      const clip = await openSealed(sealed, key, decodeBase64Url(grant.iv)!);
      assert.deepEqual(
        clip,
        await Deno.readFile(`${server.dataDir}/videos/${id}.frag.mp4`),
      );
      // What curl or the network tab captures is not a video.
      const dir = await Deno.makeTempDir();
      await Deno.writeFile(`${dir}/captured`, sealed);
      const probe = await runFfmpeg({
        inputs: [{ path: `${dir}/captured`, name: "captured" }],
        args: ["-i", "captured", "-f", "null", "-"],
        outputs: [],
      }, { timeoutMs: 60_000, writeDir: dir });
      assert.notEqual(probe.code, 0, "ffmpeg cannot read the captured bytes");
      await Deno.remove(dir, { recursive: true });
      // The same address again: refused (the playback's nonce is spent).
      const again = await owner.fetch(grant.segments[0], { headers: FETCH });
      assert.equal(again.status, 403);
      await again.body?.cancel();
    },
  );

  await t.step(
    "with {eme: true}: the Clear Key copy (CENC) and its key, still sealed on the wire",
    async () => {
      const res = await owner.json<
        Grant & { clearKey: { kid: string; key: string } | null }
      >(
        `/api/jobs/${id}/playback`,
        {
          method: "POST",
          body: JSON.stringify({ eme: true }),
          headers: { "content-type": "application/json" },
        },
      );
      assert.equal(res.status, 201);
      const grant = res.body;
      assert.equal(decodeBase64Url(grant.clearKey!.kid)!.length, 16);
      assert.equal(decodeBase64Url(grant.clearKey!.key)!.length, 16);
      const sealed = new Uint8Array(
        await (await owner.fetch(grant.segments[0], { headers: FETCH }))
          .arrayBuffer(),
      );
      const key = await importKey(decodeBase64Url(grant.key)!, "decrypt");
      const clip = await openSealed(sealed, key, decodeBase64Url(grant.iv)!);
      const text = new TextDecoder("latin1").decode(clip);
      for (const box of ["encv", "tenc", "senc", "saiz", "saio"]) {
        assert.ok(text.includes(box), box);
      }
      assert.deepEqual(
        clip,
        await Deno.readFile(`${server.dataDir}/videos/${id}.cenc.mp4`),
      );
    },
  );

  await t.step(
    "refused: another session, no cookie, a tab or a <video>, a forged signature",
    async () => {
      const stranger = server.client();
      const res = await stranger.fetch(`/api/jobs/${id}/playback`, {
        method: "POST",
      });
      assert.equal(res.status, 404);
      await res.body?.cancel();
      const grant = await grantFor(owner);
      const url = grant.segments[0];
      const refused = async (
        client: Client | null,
        path: string,
        headers: HeadersInit,
      ) => {
        // null: a request without any session cookie.
        const r = await (client ?? server.client()).fetch(path, { headers });
        assert.equal(r.status, 403, `${path} ${JSON.stringify(headers)}`);
        assert.equal((await r.json()).error.code, "forbidden");
      };
      await refused(stranger, url, FETCH);
      await refused(null, url, FETCH);
      await refused(owner, url, { "sec-fetch-dest": "document" });
      await refused(owner, url, { "sec-fetch-dest": "video" });
      await refused(
        owner,
        url.replace(/sig=./, (m) => (m.endsWith("A") ? "sig=B" : "sig=A")),
        FETCH,
      );
      await refused(
        owner,
        url.replace(/exp=\d+/, (m) => `exp=${Number(m.slice(4)) + 60_000}`),
        FETCH,
      );
      // None of those spent the owner's playback.
      const ok = await owner.fetch(url, { headers: FETCH });
      assert.equal(ok.status, 200);
      await ok.body?.cancel();
    },
  );
});

/**
 * The service in this process on a fake clock, with one done job: its owner's
 * cookie and the job id. The store is the disk's unless one is given.
 */
async function doneJobInProcess(store?: Store) {
  const clock = new FakeClock(Date.now());
  const server = await startApp({ MODEL_DURATION_MS: "1000" }, {
    clock,
    store,
  });
  const app = server.service.app!;
  const owner = server.client();
  const { id } = (await owner.upload(await fixture("rgb.png"))).body as {
    id: string;
  };
  // Run the model to its end on the fake clock.
  assert.equal((await runToEnd(owner, clock, id)).status, "done");
  const cookie = owner.cookie;
  const grant = async (): Promise<Grant> =>
    await (await app.request(`/api/jobs/${id}/playback`, {
      method: "POST",
      headers: { cookie },
    })).json();
  return {
    service: server.service,
    app,
    clock,
    cookie,
    id,
    grant,
    [Symbol.asyncDispose]: () => server[Symbol.asyncDispose](),
  };
}

Deno.test("playback: an expired segment address is refused; too many playbacks get 429", async () => {
  await using t = await doneJobInProcess();
  const { app, clock, cookie, id } = t;
  const grant = await t.grant();
  clock.advance(60_001);
  const late = await app.request(grant.segments[0], {
    headers: { cookie, ...FETCH },
  });
  assert.equal(late.status, 403);
  assert.match((await late.json()).error.message, /expired/);
  let last: Response | null = null;
  for (let i = 0; i <= 30; i++) { // 30 a minute are allowed
    last = await app.request(`/api/jobs/${id}/playback`, {
      method: "POST",
      headers: { cookie },
    });
    if (last.status === 429) break;
    await last.body?.cancel();
  }
  assert.equal(last!.status, 429);
  assert.equal((await last!.json()).error.code, "rate_limited");
  assert.ok(Number(last!.headers.get("retry-after")) >= 1);
});

Deno.test("playback from the memory store: the routes ask the store, not the disk", async () => {
  const store = new MemoryStore();
  await using t = await doneJobInProcess(store);
  const grant = await t.grant();
  assert.match(grant.type, /^video\/mp4; codecs="avc1\.[0-9a-f]{6}"$/);
  const res = await t.app.request(grant.segments[0], {
    headers: { cookie: t.cookie, ...FETCH },
  });
  assert.equal(res.status, 200);
  const key = await importKey(decodeBase64Url(grant.key)!, "decrypt");
  const clip = await openSealed(
    new Uint8Array(await res.arrayBuffer()),
    key,
    decodeBase64Url(grant.iv)!,
  );
  assert.deepEqual(clip, await readStored(store, t.id, "fragments"));
});

Deno.test({
  name:
    "playback: a segment whose key cannot be imported fails without leaking the file",
  // Off by default since Deno 2: fails the test if the route leaves a file open.
  sanitizeResources: true,
}, async () => {
  await using t = await doneJobInProcess();
  const grant = await t.grant();
  const p = new URL(grant.segments[0], "http://x").searchParams.get("p")!;
  const entry = await t.service.kv.get<{ key: Uint8Array }>(keys.playback(p));
  await t.service.kv.set(keys.playback(p), {
    ...entry.value!,
    key: new Uint8Array(5), // not an AES key: importKey throws
  });
  const logged = console.error;
  console.error = () => {}; // the 500 is logged; expected here
  try {
    const res = await t.app.request(grant.segments[0], {
      headers: { cookie: t.cookie, ...FETCH },
    });
    assert.equal(res.status, 500);
    await res.body?.cancel();
  } finally {
    console.error = logged;
  }
});
