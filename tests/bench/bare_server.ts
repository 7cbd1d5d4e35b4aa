/**
 * The baselines for `deno task bench`: a bare `Deno.serve` that streams a
 * request body to a file (same read loop as ours, no checks), serves one
 * file whole, and on `GET /sse` holds an event stream open (one
 * ReadableStream per request, nothing else per stream) to which it sends one
 * event with the time it was sent (`data: {"t":ms}`) every
 * {@link SSE_INTERVAL_MS}, the same bytes to every stream, as often as the
 * server sends progress to a job with many streams (routes/events.ts). On
 * `GET /hold` it never answers; `GET /held` says how many it holds.
 * Usage: deno run -A tests/bench/bare_server.ts <dir> <file to serve>
 */
import { SSE_INTERVAL_MS } from "./_bare_sse.ts";

const [dir, served] = Deno.args;
let n = 0;
/** Requests to `/hold` received so far. */
let held = 0;

const streams = new Set<ReadableStreamDefaultController<Uint8Array>>();
const encoder = new TextEncoder();
setInterval(() => {
  const bytes = encoder.encode(`data: {"t":${Date.now()}}\n\n`);
  for (const c of streams) c.enqueue(bytes);
}, SSE_INTERVAL_MS);
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
  const path = new URL(req.url).pathname;
  // Held, never answered: what Deno's HTTP server alone keeps per request.
  if (path === "/hold") return new Promise<Response>(() => void held++);
  if (path === "/held") return new Response(String(held));
  if (path === "/sse") {
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
