import assert from "node:assert/strict";
import { ModelError } from "../queue/models/adapter.ts";
import { inspectVideo } from "../tests/_media.ts";
import {
  ChildEncoder,
  clipSize,
  EncodeError,
  runFfmpeg,
  type TranscodeRequest,
} from "./clip.ts";

/**
 * A model's video: 10 distinct `testsrc` frames at 63×47 (odd sides) in AVI
 * with MPEG-4 Part 2, made with ffmpeg.wasm: `-f lavfi -i
 * testsrc=size=63x47:rate=10 -frames:v 10 -c:v mpeg4 -q:v 5 model.avi`.
 */
const MODEL_VIDEO = new URL("../tests/fixtures/model.avi", import.meta.url)
  .pathname;
const MODEL_FRAMES = 10;
const TIMEOUT_MS = 60_000;

/** The outputs of a transcode in a fresh temp dir, removed by `using`. */
async function workspace() {
  const dir = await Deno.makeTempDir();
  return {
    dir,
    req: (input: string): TranscodeRequest => ({
      input,
      output: `${dir}/out.mp4`,
      fragOutput: `${dir}/frag.mp4`,
    }),
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

/** Makes a video (or any file) with ffmpeg.wasm from a lavfi source. */
async function lavfi(dir: string, source: string, name: string) {
  const { code, log } = await runFfmpeg({
    inputs: [],
    args: ["-f", "lavfi", "-i", source, name],
    outputs: [{ name, path: `${dir}/${name}` }],
  }, { timeoutMs: TIMEOUT_MS, writeDir: dir });
  assert.equal(code, 0, log);
  return `${dir}/${name}`;
}

async function assertNoOutput(req: TranscodeRequest) {
  await assert.rejects(Deno.stat(req.output), Deno.errors.NotFound);
  await assert.rejects(Deno.stat(req.fragOutput), Deno.errors.NotFound);
}

const modelOutput = (e: unknown) =>
  e instanceof ModelError && e.code === "model_output";

Deno.test("a model's video becomes the contract's MP4 with its own frames, and its fragmented copy", async () => {
  await using ws = await workspace();
  const req = ws.req(MODEL_VIDEO);
  await new ChildEncoder({ timeoutMs: TIMEOUT_MS }).transcode(req);
  const facts = await inspectVideo(req.output);
  assert.equal(facts.codec, "h264");
  assert.equal(facts.pixFmt, "yuv420p");
  // The model's frames, every one, not the simulator's 5-frame zoom.
  assert.equal(facts.frames, MODEL_FRAMES);
  assert.equal(facts.distinctFrames, MODEL_FRAMES);
  // 63×47 has odd sides: yuv420p needs even ones, in the same shape.
  assert.deepEqual([facts.width, facts.height], [64, 48]);
  assert.deepEqual(clipSize(63, 47), { width: 64, height: 48 });
  assert.ok(
    facts.boxes.indexOf("moov") < facts.boxes.indexOf("mdat"),
    `faststart: ${facts.boxes}`,
  );
  const frag = await inspectVideo(req.fragOutput);
  assert.deepEqual([frag.frames, frag.width, frag.height], [
    MODEL_FRAMES,
    64,
    48,
  ]);
  assert.deepEqual(frag.boxes.slice(0, 2), ["ftyp", "moov"]);
  assert.ok(frag.boxes.includes("moof"), `fragmented: ${frag.boxes}`);
});

Deno.test("a model's 1600×900 video is scaled to 1280×720: longest side ≤ 1280", async () => {
  await using ws = await workspace();
  const input = await lavfi(
    ws.dir,
    "testsrc=size=1600x900:rate=10:duration=0.3",
    "big.mkv",
  );
  const req = ws.req(input);
  await new ChildEncoder({ timeoutMs: TIMEOUT_MS }).transcode(req);
  const facts = await inspectVideo(req.output);
  assert.deepEqual([facts.width, facts.height], [1280, 720]);
  assert.equal(facts.frames, 3);
});

Deno.test("a model's output that is not a video is refused with model_output, nothing written", async () => {
  await using ws = await workspace();
  const input = `${ws.dir}/garbage.mp4`;
  // Fixed bytes, not random ones: random bytes sometimes pass for an audio
  // stream (an MPEG frame sync), and the answer is then "no video stream".
  let x = 0x2545f491;
  const garbage = Uint8Array.from({ length: 5000 }, () => {
    x ^= x << 13, x ^= x >>> 17, x ^= x << 5; // xorshift32
    return x & 0x7f; // no byte ≥ 0x80: no MPEG or ADTS frame sync
  });
  await Deno.writeFile(input, garbage);
  const req = ws.req(input);
  await assert.rejects(
    new ChildEncoder({ timeoutMs: TIMEOUT_MS }).transcode(req),
    (e) => modelOutput(e) && /could not be read/.test((e as Error).message),
  );
  await assertNoOutput(req);
});

Deno.test("a model's output with sound and no picture is refused: no video stream", async () => {
  await using ws = await workspace();
  const input = await lavfi(ws.dir, "sine=duration=0.2", "sound.wav");
  const req = ws.req(input);
  await assert.rejects(
    new ChildEncoder({ timeoutMs: TIMEOUT_MS }).transcode(req),
    (e) => modelOutput(e) && /no video stream/.test((e as Error).message),
  );
  await assertNoOutput(req);
});

Deno.test("a model's video with more pixels a frame than allowed is refused before decoding", async () => {
  await using ws = await workspace();
  const req = ws.req(MODEL_VIDEO);
  // 63×47 = 2961 pixels; the real limit is 4096×4096, too big to make here.
  const encoder = new ChildEncoder({
    timeoutMs: TIMEOUT_MS,
    maxModelPixels: 2000,
  });
  await assert.rejects(
    encoder.transcode(req),
    (e) => modelOutput(e) && /63×47/.test((e as Error).message),
  );
  await assertNoOutput(req);
});

Deno.test("a transcode that overruns is killed with encode_timeout; a cancel kills it too", async () => {
  await using ws = await workspace();
  const req = ws.req(MODEL_VIDEO);
  await assert.rejects(
    new ChildEncoder({ timeoutMs: 1 }).transcode(req),
    (e) => e instanceof EncodeError && e.code === "encode_timeout",
  );
  const abort = new AbortController();
  const run = new ChildEncoder({ timeoutMs: TIMEOUT_MS }).transcode({
    ...req,
    signal: abort.signal,
  });
  abort.abort();
  await assert.rejects(
    run,
    (e) => e instanceof EncodeError && e.code === "encode_aborted",
  );
  await assertNoOutput(req);
});

/** Whether process `pid` exists (a reaped child does not). */
const exists = (pid: number) =>
  Deno.stat(`/proc/${pid}`).then(() => true, () => false);

Deno.test("a warm transcoder: its child is started before the model's video exists, waits, and does the transcode itself", async () => {
  await using ws = await workspace();
  const spawned: number[] = [];
  const encoder = new ChildEncoder({
    timeoutMs: TIMEOUT_MS,
    onChild: (pid) => spawned.push(pid),
  });
  const warm = encoder.warmTranscoder({ writeDir: ws.dir });
  assert.deepEqual(spawned, [warm.pid]);
  assert.ok(await exists(warm.pid), "started ahead, waiting");
  // The model writes its video only now.
  const input = `${ws.dir}/model.avi`;
  await Deno.copyFile(MODEL_VIDEO, input);
  const req = ws.req(input);
  await warm.transcode(req);
  assert.deepEqual(spawned, [warm.pid], "no second child: the warm one did it");
  const facts = await inspectVideo(req.output);
  assert.deepEqual([facts.frames, facts.width, facts.height], [
    MODEL_FRAMES,
    64,
    48,
  ]);
  assert.equal((await inspectVideo(req.fragOutput)).frames, MODEL_FRAMES);
  assert.equal(await exists(warm.pid), false, "the child has ended");
  await warm.close(); // idempotent
});

Deno.test("a warm transcoder ended unused (closed, or its job aborted) leaves no process and writes nothing", async () => {
  await using ws = await workspace();
  const spawned: number[] = [];
  const encoder = new ChildEncoder({
    timeoutMs: TIMEOUT_MS,
    onChild: (pid) => spawned.push(pid),
  });
  const closed = encoder.warmTranscoder({ writeDir: ws.dir });
  await closed.close();
  assert.equal(await exists(closed.pid), false);

  const abort = new AbortController();
  const aborted = encoder.warmTranscoder({
    writeDir: ws.dir,
    signal: abort.signal,
  });
  abort.abort();
  const req = { ...ws.req(MODEL_VIDEO), signal: abort.signal };
  await assert.rejects(
    aborted.transcode(req),
    (e) => e instanceof EncodeError && e.code === "encode_aborted",
  );
  assert.equal(await exists(aborted.pid), false);
  assert.deepEqual(spawned, [closed.pid, aborted.pid], "no other child");
  await assertNoOutput(req);
});
