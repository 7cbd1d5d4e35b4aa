/**
 * The webhook body reader on bodies cut anywhere: Cog resends all the logs
 * each time and inlines the video as a `data:` URL, so what is kept must
 * not depend on where the network split the bytes.
 */
import assert from "node:assert/strict";
import { readCogWebhook } from "./cog_webhook.ts";

/** `text` as a stream cut every `step` bytes (a multi-byte character too). */
function cut(
  text: string,
  step: number,
): ReadableStream<Uint8Array<ArrayBuffer>> {
  const bytes = new TextEncoder().encode(text);
  const pieces: Uint8Array<ArrayBuffer>[] = [];
  for (let i = 0; i < bytes.length; i += step) {
    pieces.push(bytes.slice(i, i + step));
  }
  return ReadableStream.from(pieces);
}

Deno.test("cog webhook: the video in a data: URL is decoded to a file, wherever the body is cut", async () => {
  const dir = await Deno.makeTempDir();
  const video = new Uint8Array(1000).map((_, i) => (i * 7) % 256);
  const b64 = btoa(String.fromCharCode(...video));
  const body = JSON.stringify({
    id: "x",
    status: "succeeded",
    logs:
      'tab\there "quoted" \\ é ✓\n\r 42%|████▏     | 21/50 [00:10<00:14]\r100%|██████████| 50/50\n',
    output: ["https://cdn.example/poster.png", `data:video/mp4;base64,${b64}`],
  });
  for (const step of [1, 2, 3, 5, 64, 1 << 20]) {
    const read = await readCogWebhook(cut(body, step), dir, "job");
    assert.ok(read.ok, `step ${step}: ${!read.ok && read.problem}`);
    assert.equal(read.event.status, "succeeded");
    assert.equal(read.event.progress, 100);
    assert.equal(read.event.log, "100%|██████████| 50/50");
    const out = read.event.output;
    assert.ok(out && "file" in out, JSON.stringify(out));
    assert.deepEqual(await Deno.readFile(out.file), video, `step ${step}`);
    await Deno.remove(out.file);
  }
  assert.deepEqual([...Deno.readDirSync(dir)], [], "no file left behind");
  await Deno.remove(dir);
});

Deno.test("cog webhook: logs longer than what is kept still give the last tqdm bar", async () => {
  const dir = await Deno.makeTempDir();
  let logs = "";
  for (let n = 0; n <= 40_000; n++) {
    logs += `\r${Math.floor(n / 400)}%|#   | ${n}/40000 [00:01<00:02]`;
  }
  const body = JSON.stringify({ id: "x", status: "processing", logs });
  assert.ok(body.length > 1024 * 1024, "longer than the text kept");
  const read = await readCogWebhook(cut(body, 4096), dir, "job");
  assert.ok(read.ok);
  assert.equal(read.event.progress, 100);
  assert.equal(read.event.output, null);
  await Deno.remove(dir);
});

Deno.test("cog webhook: a non-terminal event's data: outputs are not kept; nonsense is named", async () => {
  const dir = await Deno.makeTempDir();
  const partial = JSON.stringify({
    status: "processing",
    output: ["data:video/mp4;base64,AAAA"],
  });
  const read = await readCogWebhook(cut(partial, 3), dir, "job");
  assert.ok(read.ok);
  assert.equal(read.event.output, null);
  assert.deepEqual([...Deno.readDirSync(dir)], []);
  const cases: [string, RegExp][] = [
    ["{nonsense", /not JSON/],
    ['{"status":"exploded"}', /status "exploded"/],
    [
      '{"status":"succeeded","output":"data:video/mp4,rawbytes"}',
      /not in base64/,
    ],
    [
      '{"status":"succeeded","output":"data:video/mp4;base64,@@@@"}',
      /bad base64/,
    ],
    ['{"status":"succeeded","output":{"video":"x"}}', /not a video URL/],
    ['{"status":"succeeded"}', /gave no output/],
  ];
  for (const [text, problem] of cases) {
    const r = await readCogWebhook(cut(text, 4), dir, "job");
    const said = r.ok ? JSON.stringify(r.event.output) : r.problem;
    assert.match(said, problem, text);
  }
  assert.deepEqual([...Deno.readDirSync(dir)], []);
  await Deno.remove(dir);
});
