import assert from "node:assert/strict";
import {
  bytesSource,
  crc32,
  MAX_PIXELS,
  ProbeError,
  probeImage,
} from "./probe.ts";

const fixture = (name: string) =>
  Deno.readFile(new URL(`../tests/fixtures/${name}`, import.meta.url));
const probe = (bytes: Uint8Array) => probeImage(bytesSource(bytes));

/** Asserts that probing `bytes` throws a ProbeError with `code` and a matching sentence. */
async function assertRefused(bytes: Uint8Array, code: string, match: RegExp) {
  await assert.rejects(probe(bytes), (e) => {
    assert.ok(e instanceof ProbeError);
    assert.equal(e.name, "ProbeError");
    assert.equal(e.code, code);
    assert.match(e.message, match);
    return true;
  });
}

/** A PNG whose header says width × height, with a tiny body (a "bomb"). */
function pngWithSize(width: number, height: number): Uint8Array {
  const ihdr = new Uint8Array(17);
  ihdr.set(new TextEncoder().encode("IHDR"));
  const view = new DataView(ihdr.buffer);
  view.setUint32(4, width);
  view.setUint32(8, height);
  ihdr.set([8, 2, 0, 0, 0], 12);
  const chunk = (body: Uint8Array) => {
    const out = new Uint8Array(body.length + 8);
    const v = new DataView(out.buffer);
    v.setUint32(0, body.length - 4);
    out.set(body, 4);
    v.setUint32(body.length + 4, crc32(body));
    return out;
  };
  const idat = new Uint8Array([
    ...new TextEncoder().encode("IDAT"),
    0x78,
    0x9c,
  ]);
  const iend = new TextEncoder().encode("IEND");
  return new Uint8Array([
    0x89,
    0x50,
    0x4e,
    0x47,
    0x0d,
    0x0a,
    0x1a,
    0x0a,
    ...chunk(ihdr),
    ...chunk(idat),
    ...chunk(iend),
  ]);
}

Deno.test("probe reads type and size of every accepted format", async () => {
  const cases: [string, string, number, number][] = [
    ["rgb.png", "image/png", 64, 48],
    ["deep16.png", "image/png", 63, 47],
    ["baseline.jpg", "image/jpeg", 64, 48],
    ["progressive.jpg", "image/jpeg", 64, 48],
    ["cmyk.jpg", "image/jpeg", 64, 48],
    ["lossy.webp", "image/webp", 64, 48],
    ["lossless.webp", "image/webp", 65, 49],
    ["alpha.webp", "image/webp", 64, 48],
  ];
  for (const [name, type, width, height] of cases) {
    const info = await probe(await fixture(name));
    assert.deepEqual(
      [info.type, info.width, info.height, info.orientation],
      [type, width, height, 1],
      name,
    );
  }
});

Deno.test("probe applies EXIF orientation 6 to the reported size", async () => {
  // Stored 64×32, rotated 90° clockwise for display: 32×64.
  const info = await probe(await fixture("rotated.jpg"));
  assert.deepEqual([info.width, info.height, info.orientation], [32, 64, 6]);
});

Deno.test("probe refuses what is not PNG, JPEG or WebP with unsupported_type", async () => {
  await assertRefused(
    await fixture("animated.gif"),
    "unsupported_type",
    /not a PNG, JPEG or WebP/,
  );
  await assertRefused(
    new TextEncoder().encode("<svg xmlns='http://www.w3.org/2000/svg'/>"),
    "unsupported_type",
    /not a PNG/,
  );
  await assertRefused(
    new Uint8Array([0x89, 0x50]),
    "unsupported_type",
    /not a PNG/,
  );
});

Deno.test("probe refuses truncated files of each format with invalid_image", async () => {
  for (
    const name of [
      "rgb.png",
      "baseline.jpg",
      "progressive.jpg",
      "lossy.webp",
      "lossless.webp",
    ]
  ) {
    const bytes = await fixture(name);
    for (const keep of [0.5, 0.9]) {
      await assertRefused(
        bytes.subarray(0, Math.floor(bytes.length * keep)),
        "invalid_image",
        /truncated|corrupt/,
      );
    }
  }
});

Deno.test("probe refuses a PNG with a broken header checksum", async () => {
  const bytes = (await fixture("rgb.png")).slice();
  bytes[20] ^= 0xff; // inside IHDR: the CRC no longer matches
  await assertRefused(bytes, "invalid_image", /checksum/);
});

Deno.test("probe refuses zero pixels and decompression bombs from the header alone", async () => {
  await assertRefused(pngWithSize(0, 100), "invalid_image", /no pixels/);
  await assertRefused(
    pngWithSize(50_000, 50_000),
    "invalid_image",
    /50000×50000.*40 megapixels/,
  );
  const ok = await probe(pngWithSize(8000, 5000)); // exactly 40 MP
  assert.equal(ok.width * ok.height, MAX_PIXELS);
});

Deno.test("probe refuses an animated WebP with a sentence", async () => {
  // VP8X with the animation flag set, then an ANIM chunk.
  const riff = new Uint8Array(30 + 14);
  const enc = new TextEncoder();
  riff.set(enc.encode("RIFF"), 0);
  new DataView(riff.buffer).setUint32(4, riff.length - 8, true);
  riff.set(enc.encode("WEBPVP8X"), 8);
  new DataView(riff.buffer).setUint32(16, 10, true);
  riff[20] = 0x02;
  riff.set(enc.encode("ANIM"), 30);
  new DataView(riff.buffer).setUint32(34, 6, true);
  await assertRefused(riff, "invalid_image", /Animated WebP/);
});
