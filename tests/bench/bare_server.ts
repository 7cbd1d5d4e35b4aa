/**
 * The baselines for `deno task bench`: a bare `Deno.serve` that streams a
 * request body to a file (same read loop as ours, no checks) and serves one
 * file whole. Usage: deno run -A tests/bench/bare_server.ts <dir> <file to serve>
 */
const [dir, served] = Deno.args;
let n = 0;
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
  const file = await Deno.open(served);
  return new Response(file.readable, {
    headers: { "content-type": "video/mp4" },
  });
});
