/** The Store contract, held by both stores: what uploads, the worker, the routes and the sweeps rely on. */
import assert from "node:assert/strict";
import { putImage, readStored, STORES } from "../tests/_stores.ts";
import type { FileKind, Store } from "./store.ts";

const ID = "01JOB00000000000000000000A";
const KINDS: FileKind[] = ["image", "video", "fragments", "cenc"];
const bytes = (n: number, seed = 1) =>
  Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) % 251);

const listed = async (store: Store) =>
  (await Array.fromAsync(store.entries())).map((e) => [e.kind, e.id]).sort();

/** A test that also fails when a file is left open (Deno 2 sanitizes no resources by default). */
const test = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, sanitizeResources: true, fn });

for (const [name, make] of Object.entries(STORES)) {
  test(`${name} store: an upload received in chunks, probed, kept, opened with its size`, async () => {
    await using t = await make();
    const incoming = await t.store.receive();
    const data = bytes(200_000);
    // One buffer reused for every chunk, as the upload reader does.
    const buffer = new Uint8Array(64 * 1024);
    for (let at = 0; at < data.length; at += buffer.length) {
      const chunk = data.subarray(at, at + buffer.length);
      buffer.set(chunk);
      await incoming.write(buffer.subarray(0, chunk.length));
    }
    assert.deepEqual((await listed(t.store)).map(([kind]) => kind), [
      "partial",
    ]);
    {
      using probe = await incoming.open();
      assert.equal(probe.size, data.length);
      const head = new Uint8Array(12);
      await probe.seek(100, Deno.SeekMode.Start);
      assert.equal(await probe.read(head), 12);
      assert.deepEqual(head, data.subarray(100, 112));
    }
    await incoming.keep(ID);
    await incoming.discard(); // after keep: nothing happens
    const file = await t.store.open(ID, "image");
    assert.equal(file?.size, data.length);
    file!.close();
    assert.deepEqual(await readStored(t.store, ID, "image"), data);
    assert.deepEqual(await listed(t.store), [["image", ID]]);
  });

  test(`${name} store: a discarded upload leaves nothing`, async () => {
    await using t = await make();
    const incoming = await t.store.receive();
    await incoming.write(bytes(1000));
    (await incoming.open()).close();
    await incoming.discard();
    assert.deepEqual(await listed(t.store), []);
    await assert.rejects(incoming.keep(ID));
    assert.equal(await t.store.open(ID, "image"), null);
  });

  test(`${name} store: a workspace's outputs are stored on commit, their sizes returned; discard keeps the image`, async () => {
    await using t = await make();
    const image = bytes(500);
    await putImage(t.store, ID, image);
    const ws = await t.store.workspace(ID);
    assert.deepEqual(await Deno.readFile(ws.input), image);
    await Deno.writeFile(ws.outputs.video, bytes(300, 2));
    await Deno.writeFile(ws.outputs.fragments, bytes(400, 3));
    // Nothing is a video before the commit.
    assert.equal(await t.store.open(ID, "video"), null);
    assert.deepEqual(await ws.commit(), { bytes: 300, stored: 700 });
    assert.deepEqual(await readStored(t.store, ID, "video"), bytes(300, 2));
    assert.deepEqual(await readStored(t.store, ID, "fragments"), bytes(400, 3));
    assert.equal(await t.store.open(ID, "cenc"), null, "not packaged");
    assert.deepEqual(await listed(t.store), [
      ["image", ID],
      ["video", ID],
      ["video", ID],
    ]);

    const again = await t.store.workspace(ID);
    await Deno.writeFile(again.outputs.video, bytes(10));
    await again.discard();
    assert.deepEqual(await listed(t.store), [
      ["image", ID],
      ["video", ID],
      ["video", ID],
    ]);
    assert.deepEqual(await readStored(t.store, ID, "video"), bytes(300, 2));
  });

  test(`${name} store: removeJob leaves nothing of the job; removeImage only the image`, async () => {
    await using t = await make();
    const other = "01JOB00000000000000000000B";
    for (const id of [ID, other]) {
      await putImage(t.store, id, bytes(100));
      const ws = await t.store.workspace(id);
      for (const path of Object.values(ws.outputs)) {
        await Deno.writeFile(path, bytes(50));
      }
      await ws.commit();
    }
    await t.store.removeJob(ID);
    for (const kind of KINDS) assert.equal(await t.store.open(ID, kind), null);
    await t.store.removeImage(other);
    assert.equal(await t.store.open(other, "image"), null);
    assert.deepEqual(await listed(t.store), [
      ["video", other],
      ["video", other],
      ["video", other],
    ]);
    await t.store.removeJob(ID); // nothing left: no error
  });

  test(`${name} store: copyImage makes an independent copy; removeVideo keeps the image`, async () => {
    await using t = await make();
    const copy = "01JOB00000000000000000000C";
    assert.equal(await t.store.copyImage(ID, copy), false, "no image yet");
    assert.equal(await t.store.open(copy, "image"), null);
    await putImage(t.store, ID, bytes(100, 7));
    assert.equal(await t.store.copyImage(ID, copy), true);
    const ws = await t.store.workspace(ID);
    for (const path of Object.values(ws.outputs)) {
      await Deno.writeFile(path, bytes(50));
    }
    await ws.commit();
    await t.store.removeVideo(ID);
    for (const kind of ["video", "fragments", "cenc"] as const) {
      assert.equal(await t.store.open(ID, kind), null);
    }
    assert.deepEqual(await readStored(t.store, ID, "image"), bytes(100, 7));
    // Removing the original leaves the copy whole, and the other way round.
    await t.store.removeJob(ID);
    assert.deepEqual(await readStored(t.store, copy, "image"), bytes(100, 7));
    assert.deepEqual(await listed(t.store), [["image", copy]]);
  });

  test(`${name} store: a missing file opens as null; ids that could escape are refused`, async () => {
    await using t = await make();
    for (const kind of KINDS) assert.equal(await t.store.open(ID, kind), null);
    for (const bad of ["../x", "a/b", "", "x".repeat(65)]) {
      await assert.rejects(t.store.open(bad, "image"));
      await assert.rejects(t.store.removeJob(bad));
      await assert.rejects(t.store.workspace(bad));
    }
  });

  test(`${name} store: every entry can be removed by the sweeps`, async () => {
    await using t = await make();
    await putImage(t.store, ID, bytes(10));
    const ws = await t.store.workspace(ID);
    await Deno.writeFile(ws.outputs.video, bytes(10));
    await Deno.writeFile(ws.outputs.fragments, bytes(10));
    await ws.commit();
    const left = await t.store.receive(); // an upload cut by a crash
    await left.write(bytes(10));
    const entries = await Array.fromAsync(t.store.entries());
    // Sizes, for the sweep's recount of DATA_MAX_BYTES.
    for (const e of entries) {
      if (e.kind !== "partial") assert.equal(e.size, 10, e.name);
    }
    assert.deepEqual(entries.map((e) => e.kind).sort(), [
      "image",
      "partial",
      "video",
      "video",
    ]);
    for (const e of entries) {
      assert.ok(Math.abs(e.mtime - Date.now()) < 60_000, "mtime is epoch ms");
      await t.store.removeEntry(e);
    }
    assert.deepEqual(await listed(t.store), []);
    await left.discard();
  });
}
