/**
 * The baselines for `deno task bench`: a bare `Deno.serve` that streams a
 * request body to a file (same read loop as ours, no checks), serves one
 * file whole, and on `GET /sse` holds an event stream open to which it sends
 * one event with the time it was sent (`data: {"t":ms}`) {@link SSE_PER_SECOND}
 * times a second, the same bytes to every stream, as the server's progress
 * events go.
 * Usage: deno run -A tests/bench/bare_server.ts <dir> <file to serve>
 */
const [dir, served] = Deno.args;
let n = 0;
/** The model's progress writes per second (TIMINGS.tickMs = 200). */
const SSE_PER_SECOND = 5;
const streams = new Set<ReadableStreamDefaultController<Uint8Array>>();
const encoder = new TextEncoder();
setInterval(() => {
  const bytes = encoder.encode(`data: {"t":${Date.now()}}\n\n`);
  for (const c of streams) c.enqueue(bytes);
}, 1000 / SSE_PER_SECOND);
Deno.serve({
  port: 0,
  onListen: ({ port }) => console.log(`listening on http://127.0.0.1:${port}/`),
}, async (req) => {
  if (req.method === "POST" && req.body) {
    const path = `${dir}/upload-${n++}`;
    using file = await Deno.open(path, { write: true, create: true });
    const reader = req.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      for (let w = 0; w < value.length;) {
        w += await file.write(value.subarray(w));
      }
    }
    await Deno.remove(path);
    return new Response("ok", { status: 202 });
  }
  if (new URL(req.url).pathname === "/sse") {
    let mine: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({
      start: (c) => void streams.add(mine = c),
      cancel: () => void streams.delete(mine),
    });
    return new Response(body, {
      headers: { "content-type": "text/event-stream" },
    });
  }
  const file = await Deno.open(served);
  return new Response(file.readable, {
    headers: { "content-type": "video/mp4" },
  });
});
