import assert from "node:assert/strict";
import { EventStream } from "./_sse.ts";

Deno.test("event stream: bytes offered while older ones wait replace them, never come before them", async () => {
  const stream = new EventStream(() => {});
  const reader = stream.body.getReader();
  const bytes = (n: number) => new Uint8Array([n]);
  const reads: Promise<ReadableStreamReadResult<Uint8Array>>[] = [];
  // In one turn, as a burst of moments meets a reading client: each read
  // makes room before the stream's pull has run for it.
  stream.offer(bytes(1));
  stream.offer(bytes(2)); // waits
  reads.push(reader.read()); // takes 1; the pull sends 2
  reads.push(reader.read()); // takes 2; the next pull comes later
  stream.offer(bytes(3)); // room: sent
  stream.offer(bytes(4)); // waits
  reads.push(reader.read()); // takes 3
  stream.offer(bytes(5)); // room again before the pull: 4 is older
  stream.close();
  const got: number[] = [];
  for (const r of reads) got.push((await r).value![0]);
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    got.push(value[0]);
  }
  assert.deepEqual(
    got,
    [...got].sort((a, b) => a - b),
    `sent out of order: ${got.join(" ")}`,
  );
  assert.equal(got.at(-1), 5, `the newest last: ${got.join(" ")}`);
});
