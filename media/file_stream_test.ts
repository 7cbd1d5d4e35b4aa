import assert from "node:assert/strict";
import { closingStream } from "./file_stream.ts";
import { fileRangeStream } from "./range.ts";
import type { StoredFile } from "./store.ts";

const counter = () => {
  const file = {
    closed: 0,
    close() {
      this.closed++;
    },
  };
  return file;
};

Deno.test("closingStream closes the file once at the end, on cancel, and when a read throws", async () => {
  const done = counter();
  let left = 2;
  const chunks = closingStream(
    done,
    () => Promise.resolve(left-- > 0 ? new Uint8Array([1]) : null),
  );
  assert.equal((await new Response(chunks).arrayBuffer()).byteLength, 2);
  assert.equal(done.closed, 1);

  const cancelled = counter();
  const reader = closingStream(
    cancelled,
    () => Promise.resolve(new Uint8Array(1)),
  )
    .getReader();
  await reader.read();
  await reader.cancel();
  assert.equal(cancelled.closed, 1);

  const broken = counter();
  const failing = closingStream(
    broken,
    () => Promise.reject(new Error("disk")),
  );
  await assert.rejects(new Response(failing).arrayBuffer(), /disk/);
  assert.equal(broken.closed, 1);
});

Deno.test("a byte range whose read fails closes its file", async () => {
  const file = Object.assign(counter(), {
    size: 1000,
    readable: new ReadableStream<Uint8Array<ArrayBuffer>>(),
    read: () => Promise.reject(new Error("EIO")),
    seek: () => Promise.resolve(0),
    [Symbol.dispose]() {},
  });
  const stream = await fileRangeStream(file as StoredFile, 0, 99, 1000);
  await assert.rejects(new Response(stream).arrayBuffer(), /EIO/);
  assert.equal(file.closed, 1);
});
