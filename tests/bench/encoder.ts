/**
 * Bench section "encoder": the encoder child's peak memory and time for one
 * 1921×1081 PNG → clip (issue 14), against the child as it was before (the
 * `@ffmpeg/ffmpeg` class, V8's default tiers, x264's look-ahead) in the same
 * run, and against native ffmpeg with the same filters when one is installed
 * (the floor; the service never needs it, so the row says when it is absent).
 * Peaks are exact (tests/_peak.ts: the kernel's `ru_maxrss` of the child).
 */
import { childArgs, clipArgs, clipSpec } from "../../media/clip.ts";
import { makeNoisyPng } from "../_media.ts";
import { type Peak, peakOf } from "../_peak.ts";
import {
  type BenchContext,
  fmt,
  mb,
  medianPair,
  medianPairRuns,
  pairedRuns,
  quantile,
  type Row,
} from "./_util.ts";

/** Odd, so that the median ratio is one pair's (see medianPair). */
const ROUNDS = 5;
/** Issue 14: 1.5× native ffmpeg's 110 MB. */
const GOAL_PEAK_MB = 165;
/** Issue 14: no slower than 1.2× the child before it. */
const GOAL_TIME_RATIO = 1.2;
const WIDTH = 1921, HEIGHT = 1081;

const OURS = new URL("../../media/ffmpeg_child.ts", import.meta.url).pathname;
const BEFORE = new URL("./_class_child.ts", import.meta.url).pathname;

/** What x264 was given before issue 14: its defaults (look-ahead, B-frames). */
const withLookAhead = (args: string[]) => {
  const at = args.indexOf("-x264-params");
  return at < 0 ? args : [...args.slice(0, at), ...args.slice(at + 2)];
};

export async function encoder(ctx: BenchContext): Promise<Row[]> {
  const dir = `${ctx.dir}/encoder`;
  await Deno.mkdir(dir, { recursive: true });
  const input = `${dir}/in.png`;
  await makeNoisyPng(input, WIDTH, HEIGHT);
  const req = {
    input,
    output: `${dir}/out.mp4`,
    fragOutput: `${dir}/frag.mp4`,
    width: WIDTH,
    height: HEIGHT,
    orientation: 1,
  };
  const spec = clipSpec(req);
  // Ours reads its command on stdin; the child before issue 14 took it as
  // its argument, with V8's own flags and x264's look-ahead.
  const ours = childArgs(dir);
  const before = [
    ...childArgs(dir)
      .filter((a) => !a.startsWith("--v8-flags="))
      .map((a) => a === OURS ? BEFORE : a),
    JSON.stringify({ ...spec, args: withLookAhead(spec.args) }),
  ];
  const run = async (args: string[]) => {
    const p = await peakOf(
      Deno.execPath(),
      args,
      args === ours ? JSON.stringify(spec) : "",
    );
    if (p.code !== 0) throw new Error(`the encoder child failed (${p.code})`);
    return p;
  };
  const native = await nativeFfmpeg(req, dir);
  const kinds: Record<string, () => Promise<Peak>> = {
    ours: () => run(ours),
    before: () => run(before),
  };
  if (native) kinds.native = native;
  const all = await pairedRuns(ROUNDS, kinds);
  const peaks = (k: string) => all[k].map((p) => mb(p.peakBytes));
  const median = (k: string) => quantile(peaks(k), 0.5);
  const span = (k: string) =>
    `${fmt(Math.min(...peaks(k)))}–${fmt(Math.max(...peaks(k)))}`;
  const nativeText = all.native
    ? `native ffmpeg, same arguments ${fmt(median("native"))} MB`
    : "native ffmpeg: not installed (or not working), not measured";
  const time = medianPair(
    all.ours.map((p) => p.ms),
    all.before.map((p) => p.ms),
  );
  return [{
    measure:
      `encoder child, peak RSS, ${WIDTH}×${HEIGHT} PNG → clip (ffmpeg.wasm in the child's own isolate, Liftoff only, x264 without look-ahead)`,
    figure: `${fmt(median("ours"))} MB (${span("ours")})`,
    baseline: `before (\`@ffmpeg/ffmpeg\`'s Worker, V8 tiers, look-ahead) ${
      fmt(median("before"))
    } MB (${span("before")}); ${nativeText}`,
    goal: `≤ ${GOAL_PEAK_MB} MB`,
    runs: `medians of ${ROUNDS} (range)`,
  }, {
    measure: `encoder child, time for the same clip (start to exit)`,
    figure: `${fmt(time.ours, 0)} ms`,
    baseline: `before ${fmt(time.base, 0)} ms`,
    goal: `≤ ${GOAL_TIME_RATIO}× (${fmt(time.ratio, 2)}×)`,
    runs: medianPairRuns(time),
  }];
}

/**
 * A run of native ffmpeg with the clip's own arguments, or null when there is
 * no `ffmpeg` on the PATH.
 */
async function nativeFfmpeg(
  req: { input: string; width: number; height: number; orientation: number },
  dir: string,
): Promise<(() => Promise<Peak>) | null> {
  try {
    const version = await new Deno.Command("ffmpeg", {
      args: ["-version"],
      stdout: "null",
      stderr: "null",
    }).output();
    if (!version.success) return null; // installed but broken: not measured
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  const args = [
    "-nostdin",
    "-y",
    "-loglevel",
    "error",
    ...clipArgs(req, req.input, `${dir}/native.mp4`),
  ];
  return async () => {
    const p = await peakOf("ffmpeg", args);
    if (p.code !== 0) throw new Error(`native ffmpeg failed (${p.code})`);
    return p;
  };
}
