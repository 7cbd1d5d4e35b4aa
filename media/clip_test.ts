import assert from "node:assert/strict";
import { inspectVideo, makeNoisyPng } from "../tests/_media.ts";
import {
  childArgs,
  ChildEncoder,
  clipSize,
  clipSpec,
  EncodeError,
  ENCODER_NICE,
  FfmpegChild,
} from "./clip.ts";
import { bytesSource, probeImage } from "./probe.ts";

const fixtures = new URL("../tests/fixtures/", import.meta.url);

Deno.test("clipSize keeps the aspect ratio, an even size and a longest side ≤ 1280", () => {
  assert.deepEqual(clipSize(1920, 1080), { width: 1280, height: 720 });
  assert.deepEqual(clipSize(1080, 1920), { width: 720, height: 1280 });
  assert.deepEqual(clipSize(63, 47), { width: 64, height: 48 });
  assert.deepEqual(clipSize(1, 1), { width: 2, height: 2 });
  assert.deepEqual(clipSize(8000, 5000), { width: 1280, height: 800 });
  const { width, height } = clipSize(4001, 2999);
  assert.ok(
    width % 2 === 0 && height % 2 === 0 && Math.max(width, height) <= 1280,
  );
  assert.ok(Math.abs(width / height - 4001 / 2999) < 0.01);
});

/** Encodes a fixture for real and checks the contract's promises on the MP4. */
async function encodeFixture(name: string) {
  const dir = await Deno.makeTempDir();
  const input = new URL(name, fixtures).pathname;
  const info = await probeImage(bytesSource(await Deno.readFile(input)));
  const output = `${dir}/out.mp4`, fragOutput = `${dir}/frag.mp4`;
  await new ChildEncoder({ timeoutMs: 60_000 }).makeClip({
    input,
    output,
    fragOutput,
    ...info,
  });
  const facts = await inspectVideo(output);
  const frag = await inspectVideo(fragOutput);
  await Deno.remove(dir, { recursive: true });
  return { info, facts, frag };
}

for (
  const name of [
    "rgb.png",
    "deep16.png",
    "baseline.jpg",
    "progressive.jpg",
    "cmyk.jpg",
    "rotated.jpg",
    "lossy.webp",
    "lossless.webp",
    "alpha.webp",
  ]
) {
  Deno.test(`the clip of ${name} is 5 moving H.264 yuv420p frames in its displayed shape`, async () => {
    const { info, facts, frag } = await encodeFixture(name);
    assert.equal(facts.codec, "h264");
    assert.equal(facts.pixFmt, "yuv420p");
    assert.equal(facts.frames, 5);
    assert.ok(
      facts.distinctFrames >= 4,
      `frames differ (${facts.distinctFrames} distinct)`,
    );
    assert.ok(facts.width % 2 === 0 && facts.height % 2 === 0);
    const expected = clipSize(info.width, info.height);
    assert.deepEqual([facts.width, facts.height], [
      expected.width,
      expected.height,
    ]);
    assert.ok(
      facts.boxes.indexOf("moov") < facts.boxes.indexOf("mdat"),
      `faststart: ${facts.boxes}`,
    );
    // The fragmented copy for Media Source: same frames, moov then moof/mdat pairs.
    assert.deepEqual([frag.frames, frag.width, frag.height], [
      5,
      facts.width,
      facts.height,
    ]);
    assert.equal(frag.boxes[0], "ftyp");
    assert.equal(frag.boxes[1], "moov");
    assert.ok(frag.boxes.includes("moof"), `fragmented: ${frag.boxes}`);
  });
}

Deno.test("the rotated photo's clip is portrait, as the photo is displayed", async () => {
  const { facts } = await encodeFixture("rotated.jpg"); // stored 64×32, orientation 6
  assert.ok(facts.height > facts.width, `${facts.width}×${facts.height}`);
});

Deno.test("a file ffmpeg cannot decode fails with encode_failed and leaves no output", async () => {
  const dir = await Deno.makeTempDir();
  const input = `${dir}/bad.png`;
  const good = await Deno.readFile(new URL("rgb.png", fixtures));
  const bad = good.slice();
  bad.fill(0x42, 41, bad.length - 12); // IDAT data garbled, structure intact
  await Deno.writeFile(input, bad);
  await assert.rejects(
    new ChildEncoder({ timeoutMs: 60_000 }).makeClip({
      input,
      output: `${dir}/out.mp4`,
      fragOutput: `${dir}/frag.mp4`,
      width: 64,
      height: 48,
      orientation: 1,
    }),
    (e) => e instanceof EncodeError && e.code === "encode_failed",
  );
  await assert.rejects(Deno.stat(`${dir}/out.mp4`), Deno.errors.NotFound);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("an encoder that overruns is killed with encode_timeout; a cancel kills it too", async () => {
  const dir = await Deno.makeTempDir();
  const input = new URL("rgb.png", fixtures).pathname;
  const req = {
    input,
    output: `${dir}/out.mp4`,
    fragOutput: `${dir}/frag.mp4`,
    width: 64,
    height: 48,
    orientation: 1,
  };
  await assert.rejects(
    new ChildEncoder({ timeoutMs: 1 }).makeClip(req),
    (e) => e instanceof EncodeError && e.code === "encode_timeout",
  );
  const abort = new AbortController();
  const run = new ChildEncoder({ timeoutMs: 60_000 }).makeClip({
    ...req,
    signal: abort.signal,
  });
  abort.abort();
  await assert.rejects(
    run,
    (e) => e instanceof EncodeError && e.code === "encode_aborted",
  );
  await assert.rejects(Deno.stat(req.output), Deno.errors.NotFound);
  await Deno.remove(dir, { recursive: true });
});

// The child's peak memory on this image is a `deno task bench encoder` row
// (issue 14's goal), not an assertion here: memory targets live in the bench.
Deno.test("the encoder child, run as ChildEncoder runs it, makes a 1921×1081 PNG's 1280×720 clip", async () => {
  const dir = await Deno.makeTempDir();
  const input = `${dir}/in.png`;
  await makeNoisyPng(input, 1921, 1081);
  const req = {
    input,
    output: `${dir}/out.mp4`,
    fragOutput: `${dir}/frag.mp4`,
    width: 1921,
    height: 1081,
    orientation: 1,
  };
  const child = new Deno.Command(Deno.execPath(), {
    args: childArgs(dir),
    stdin: "piped",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify(clipSpec(req))));
  await writer.close();
  const out = await child.output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const facts = await inspectVideo(req.output);
  assert.deepEqual([facts.width, facts.height, facts.frames], [1280, 720, 5]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("the encoder child runs below the server's priority, so streams and uploads go first", async () => {
  const dir = await Deno.makeTempDir();
  const child = new FfmpegChild(dir);
  try {
    const niceOf = (pid: number | "self") =>
      // /proc/<pid>/stat: field 19 is the nice value (proc(5)).
      Number(
        Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(
          " ",
        )[16],
      );
    assert.equal(niceOf(child.pid), niceOf("self") + ENCODER_NICE);
  } finally {
    await child.close();
    await Deno.remove(dir, { recursive: true });
  }
});
