import assert from "node:assert/strict";
import { packageCenc } from "./cenc.ts";

const clip = () =>
  Deno.readFile(new URL("../tests/fixtures/clip.frag.mp4", import.meta.url));

/** [type, start, size] of every box, walking the containers this clip has. */
function boxes(
  b: Uint8Array,
  start = 0,
  end = b.length,
  out: [string, number, number][] = [],
) {
  const view = new DataView(b.buffer, b.byteOffset);
  for (let at = start; at < end;) {
    const size = view.getUint32(at),
      type = String.fromCharCode(...b.subarray(at + 4, at + 8));
    out.push([type, at, size]);
    if (
      ["moov", "trak", "mdia", "minf", "stbl", "moof", "traf", "sinf", "schi"]
        .includes(type)
    ) {
      boxes(b, at + 8, at + size, out);
    }
    if (type === "stsd") boxes(b, at + 16, at + size, out);
    if (type === "encv" || type === "avc1") boxes(b, at + 86, at + size, out);
    at += size;
  }
  return out;
}
const one = (list: [string, number, number][], type: string) =>
  list.find(([t]) => t === type)!;

Deno.test("CENC packaging: encv + sinf/tenc in the sample entry, senc/saiz/saio in the fragment", async () => {
  const kid = crypto.getRandomValues(new Uint8Array(16));
  const packaged = await packageCenc(await clip(), {
    kid,
    key: crypto.getRandomValues(new Uint8Array(16)),
  });
  const list = boxes(packaged);
  const types = list.map(([t]) => t);
  for (
    const t of ["encv", "sinf", "frma", "schm", "tenc", "senc", "saiz", "saio"]
  ) assert.ok(types.includes(t), t);
  assert.ok(!types.includes("avc1") && !types.includes("mfra"));
  const [, tenc] = one(list, "tenc");
  assert.deepEqual(
    packaged.subarray(tenc + 14, tenc + 16),
    new Uint8Array([1, 8]),
  ); // protected, 8-byte IVs
  assert.deepEqual(packaged.subarray(tenc + 16, tenc + 32), kid);
  // The top-level boxes' sizes add up to the whole file, and moov's children to moov.
  const top = list.filter(([t]) =>
    ["ftyp", "moov", "moof", "mdat", "udta"].includes(t) && t !== "udta"
  );
  const [, , moovSize] = one(list, "moov");
  assert.equal(top.reduce((s, [, , size]) => s + size, 0), packaged.length);
  assert.ok(moovSize > 8);
});

Deno.test("CENC packaging: the samples decrypt (AES-CTR, IVs and subsamples from senc) to the original", async () => {
  const original = await clip();
  const key = crypto.getRandomValues(new Uint8Array(16));
  const packaged = await packageCenc(original, {
    kid: new Uint8Array(16),
    key,
  });
  const aes = await crypto.subtle.importKey("raw", key, "AES-CTR", false, [
    "decrypt",
  ]);
  const list = boxes(packaged);
  const [, moof] = one(list, "moof");
  const [, senc] = one(list, "senc");
  const [, trun] = one(list, "trun");
  const [, saio] = one(list, "saio");
  const [, mdat, mdatSize] = one(list, "mdat");
  const view = new DataView(packaged.buffer);
  assert.equal(
    view.getUint32(saio + 16),
    senc + 16 - moof,
    "saio points at the first IV",
  );
  const dataOffset = view.getInt32(trun + 16);
  assert.equal(
    moof + dataOffset,
    mdat + 8,
    "trun's data offset still points at the samples",
  );
  const count = view.getUint32(senc + 12);
  const plain = packaged.slice();
  let at = senc + 16, sample = moof + dataOffset;
  const sizes: number[] = [];
  for (let i = 0, p = trun + 24; i < count; i++, p += 8) {
    sizes.push(view.getUint32(p)); // flags a05: size, cto
  }
  for (let i = 0; i < count; i++) {
    const counter = new Uint8Array(16);
    counter.set(packaged.subarray(at, at + 8));
    const subs = view.getUint16(at + 8);
    const ranges: [number, number][] = [];
    let o = sample;
    for (let k = 0; k < subs; k++) {
      const clear = view.getUint16(at + 10 + 6 * k),
        enc = view.getUint32(at + 12 + 6 * k);
      ranges.push([o + clear, enc]);
      o += clear + enc;
    }
    assert.equal(o, sample + sizes[i], "subsamples cover the sample exactly");
    const sealed = new Uint8Array(ranges.reduce((s, [, l]) => s + l, 0));
    let k = 0;
    for (const [r, l] of ranges) {
      sealed.set(packaged.subarray(r, r + l), (k += l) - l);
    }
    const opened = new Uint8Array(
      await crypto.subtle.decrypt(
        { name: "AES-CTR", counter, length: 64 },
        aes,
        sealed,
      ),
    );
    k = 0;
    for (const [r, l] of ranges) plain.set(opened.subarray(k, k += l), r);
    at += 10 + 6 * subs;
    sample += sizes[i];
  }
  const originalMdat = one(boxes(original), "mdat");
  assert.deepEqual(
    plain.subarray(mdat, mdat + mdatSize),
    original.subarray(originalMdat[1], originalMdat[1] + originalMdat[2]),
  );
  assert.notDeepEqual(
    packaged.subarray(mdat, mdat + mdatSize),
    plain.subarray(mdat, mdat + mdatSize),
  );
});
