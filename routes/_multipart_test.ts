import assert from "node:assert/strict";
import { ApiError } from "./errors.ts";
import { boundaryOf, horspool, readMultipart } from "./_multipart.ts";

const enc = new TextEncoder();
const B = "----WebKitFormBoundaryAbC123";

/** A body as a browser sends it, cut into chunks of the given sizes (cycled). */
function body(
  parts: string[] | Uint8Array,
  sizes: number[],
): ReadableStream<Uint8Array> {
  const bytes = parts instanceof Uint8Array
    ? parts
    : enc.encode(parts.join(""));
  let at = 0, k = 0;
  return new ReadableStream({
    pull(c) {
      if (at >= bytes.length) return c.close();
      const n = sizes[k++ % sizes.length];
      c.enqueue(bytes.slice(at, at + n));
      at += n;
    },
  });
}

const file = (name: string, filename: string, content: string) =>
  `--${B}\r\nContent-Disposition: form-data; name="${name}"; filename="${filename}"\r\n` +
  `Content-Type: application/octet-stream\r\n\r\n${content}\r\n`;
const field = (name: string, value: string) =>
  `--${B}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
const end = `--${B}--\r\n`;

async function read(stream: ReadableStream<Uint8Array>) {
  const chunks: Uint8Array[] = [];
  await readMultipart(stream, B, {
    write: (c) => {
      chunks.push(c.slice()); // the reader reuses its buffer after write resolves
      return Promise.resolve();
    },
  }, { maxBody: 1 << 20, tooBig: () => new Error("too big") });
  return new TextDecoder().decode(
    await new Blob(chunks as Uint8Array<ArrayBuffer>[]).arrayBuffer(),
  );
}

const refused = (p: Promise<unknown>, match: RegExp) =>
  assert.rejects(
    p,
    (e) => e instanceof ApiError && e.status === 400 && match.test(e.message),
  );

Deno.test("boundaryOf reads quoted and plain boundaries", () => {
  assert.equal(boundaryOf(`multipart/form-data; boundary=${B}`), B);
  assert.equal(
    boundaryOf(`multipart/form-data; charset=utf-8; boundary="a b:c"`),
    "a b:c",
  );
  assert.equal(boundaryOf("multipart/form-data"), null);
});

Deno.test("the image's bytes come out whole, however the body is cut into chunks", async () => {
  // Content with CRLFs, dashes and a near-delimiter, to tempt a wrong match.
  const content = `\r\n--${B.slice(0, -1)}x\r\n--\r\n` + "∑data".repeat(3000) +
    "\r\n-";
  const parts = [
    "preamble\r\n",
    field("note", "hello"),
    file("image", "a.png", content),
    end,
    "epilogue",
  ];
  for (const sizes of [[1], [2, 3], [7], [64], [1000, 1], [100_000]]) {
    assert.equal(await read(body(parts, sizes)), content, `chunks of ${sizes}`);
  }
});

Deno.test("no image, several files, a file under another name, a cut body: 400 with a sentence", async () => {
  await refused(
    read(body([field("image", "not a file"), end], [50])),
    /No picture/,
  );
  await refused(
    read(body([file("image", "a", "1"), file("image", "b", "2"), end], [50])),
    /one picture/,
  );
  await refused(
    read(body([file("photo", "a", "1"), end], [50])),
    /field named "image"/,
  );
  await refused(
    read(body([file("image", "a", "123456")], [50])),
    /ends too early/,
  );
  await refused(
    read(body(["garbage without any delimiter"], [5])),
    /ends too early/,
  );
  const hugeHeader =
    `--${B}\r\nContent-Disposition: form-data; name="image"; filename="a"\r\nX: ${
      "y".repeat(10_000)
    }\r\n\r\n1\r\n${end}`;
  await refused(read(body([hugeHeader], [4096])), /headers are too large/);
});

Deno.test("the body limit stops the reading", async () => {
  const big = [file("image", "a", "x".repeat(5000)), end];
  await assert.rejects(
    readMultipart(body(big, [512]), B, { write: () => Promise.resolve() }, {
      maxBody: 2000,
      tooBig: () => new Error("too big"),
    }),
    /too big/,
  );
});

Deno.test("the delimiter search finds the first match wherever it is, and nothing where there is none", () => {
  const needle = new TextEncoder().encode(`\r\n--${B}`);
  const search = horspool(needle);
  const naive = (hay: Uint8Array, from: number) => {
    outer: for (let i = from; i + needle.length <= hay.length; i++) {
      for (let k = 0; k < needle.length; k++) {
        if (hay[i + k] !== needle[k]) continue outer;
      }
      return i;
    }
    return -1;
  };
  // Haystacks of needle-like bytes, with the needle planted (or not) at every kind of place.
  const alphabet = new TextEncoder().encode(`\r\n-${B}`);
  let seed = 7;
  const random = () =>
    (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  for (let round = 0; round < 300; round++) {
    const hay = Uint8Array.from(
      { length: 20 + Math.floor(random() * 200) },
      () => alphabet[Math.floor(random() * alphabet.length)],
    );
    if (round % 3 !== 0) {
      const at = Math.floor(random() * Math.max(1, hay.length - needle.length));
      hay.set(needle.subarray(0, Math.min(needle.length, hay.length - at)), at);
    }
    const from = Math.floor(random() * 10);
    assert.equal(search(hay, from), naive(hay, from), `round ${round}`);
  }
});
