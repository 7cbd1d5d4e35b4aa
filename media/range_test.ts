import assert from "node:assert/strict";
import { putImage, STORES } from "../tests/_stores.ts";
import { fileRangeStream, parseRange } from "./range.ts";

Deno.test("parseRange follows RFC 9110 §14.1.2 for one range", () => {
  assert.deepEqual(parseRange("bytes=0-", 1000), {
    kind: "partial",
    start: 0,
    end: 999,
  });
  assert.deepEqual(parseRange("bytes=0-99", 1000), {
    kind: "partial",
    start: 0,
    end: 99,
  });
  assert.deepEqual(parseRange("bytes=900-5000", 1000), {
    kind: "partial",
    start: 900,
    end: 999,
  });
  assert.deepEqual(parseRange("bytes=-100", 1000), {
    kind: "partial",
    start: 900,
    end: 999,
  });
  assert.deepEqual(parseRange("bytes=-5000", 1000), {
    kind: "partial",
    start: 0,
    end: 999,
  });
  assert.deepEqual(parseRange("bytes=999-999", 1000), {
    kind: "partial",
    start: 999,
    end: 999,
  });
});

Deno.test("parseRange: past the end is unsatisfiable (416)", () => {
  assert.deepEqual(parseRange("bytes=1000-", 1000), { kind: "unsatisfiable" });
  assert.deepEqual(parseRange("bytes=5000-6000", 1000), {
    kind: "unsatisfiable",
  });
  assert.deepEqual(parseRange("bytes=-0", 1000), { kind: "unsatisfiable" });
});

Deno.test("parseRange ignores what it may ignore: none, other units, several, invalid", () => {
  for (
    const h of [
      null,
      "",
      "items=0-1",
      "bytes=0-1,5-9",
      "bytes=9-1",
      "bytes=-",
      "garbage",
    ]
  ) {
    assert.deepEqual(parseRange(h, 1000), { kind: "full" }, String(h));
  }
});

for (const [name, make] of Object.entries(STORES)) {
  Deno.test({
    name:
      `fileRangeStream (${name} store) yields exactly the requested bytes and closes the file`,
    sanitizeResources: true, // off by default since Deno 2
  }, async () => {
    await using t = await make();
    const id = "01JOB00000000000000000000A";
    const data = Uint8Array.from(
      { length: 600_000 },
      (_, i) => (i * 7919) % 251,
    );
    await putImage(t.store, id, data);
    const open = async () => (await t.store.open(id, "image"))!;
    const read = async (start: number, end: number) => {
      const file = await open();
      const bytes = new Uint8Array(
        await new Response(
          await fileRangeStream(file, start, end, data.length),
        ).arrayBuffer(),
      );
      assert.throws(() => file.close(), Deno.errors.BadResource, "closed");
      return bytes;
    };
    assert.deepEqual(
      await read(70_000, 350_001),
      data.subarray(70_000, 350_002),
    ); // a middle part
    assert.deepEqual(await read(599_000, 599_999), data.subarray(599_000)); // to the end
    assert.deepEqual(await read(0, 599_999), data); // whole
    // A stream cancelled half-way closes its file.
    for (const end of [299_999, 599_999]) {
      const file = await open();
      const reader = (await fileRangeStream(file, 0, end, data.length))
        .getReader();
      await reader.read();
      await reader.cancel();
      assert.throws(() => file.close(), Deno.errors.BadResource, "closed");
    }
  });
}
