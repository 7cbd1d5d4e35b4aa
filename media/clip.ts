/**
 * Makes the 5-frame clip (API.md, "The video") with ffmpeg.wasm in a child
 * Deno process per job, killed when it overruns or the job is cancelled; and
 * turns a real model's own video into the same contract's MP4 (API.md
 * "Models"), in the same kind of child.
 */
import { setPriority } from "node:os";
import { ModelError } from "../queue/models/adapter.ts";
import { CHILD_V8_FLAGS, type FfmpegSpec } from "./ffmpeg_child.ts";

export interface ClipRequest {
  /** The stored upload. */
  input: string;
  /** Where the MP4 goes (faststart, for `video.url`); written only if the encode succeeds. */
  output: string;
  /**
   * Where the same frames go as fragmented MP4 (`empty_moov`, fragments at
   * keyframes, `default_base_moof`), what Media Source Extensions take.
   */
  fragOutput: string;
  /** Displayed size (EXIF orientation applied). */
  width: number;
  height: number;
  /** EXIF orientation 1-8 of the stored pixels. */
  orientation: number;
  signal?: AbortSignal;
}

/** A model's own video to make into the contract's clip. */
export interface TranscodeRequest {
  /** The model's video, any container and codec ffmpeg reads. */
  input: string;
  /** Where the MP4 goes (faststart, for `video.url`); written only if the encode succeeds. */
  output: string;
  /** Where the same frames go as fragmented MP4, as in {@link ClipRequest}. */
  fragOutput: string;
  signal?: AbortSignal;
}

/** Makes a clip or throws {@link EncodeError}. */
export interface Encoder {
  makeClip(req: ClipRequest): Promise<void>;
  /**
   * Re-encodes a model's video as the contract's clip, keeping its frames.
   * Throws {@link ModelError} `model_output` when the video cannot be read
   * (not a video, no video stream, absurd dimensions), {@link EncodeError}
   * on timeout or abort.
   */
  transcode(req: TranscodeRequest): Promise<void>;
  /**
   * Starts the work of a transcode ahead of its video: the child process
   * spawned and ffmpeg.wasm loaded while the model still runs, so that when
   * its video appears only the transcode itself remains. The child ends
   * when `signal` aborts, when it has transcoded, or on
   * {@link WarmTranscoder.close}. Optional: without it, `transcode` does all.
   */
  warmTranscoder?(
    opts: { writeDir: string; signal?: AbortSignal },
  ): WarmTranscoder;
}

/** A transcode's child started ahead ({@link Encoder.warmTranscoder}). */
export interface WarmTranscoder {
  /** The child's process id (for tests and logs). */
  readonly pid: number;
  /**
   * As {@link Encoder.transcode}, in the child already started (a fresh one
   * if it died waiting); once only.
   */
  transcode(req: TranscodeRequest): Promise<void>;
  /** Ends the child unless it has; resolves once it has exited. Idempotent. */
  close(): Promise<void>;
}

export class EncodeError extends Error {
  override name = "EncodeError";
  constructor(
    readonly code: "encode_failed" | "encode_timeout" | "encode_aborted",
    message: string,
  ) {
    super(message);
  }
}

export const FRAMES = 5;
/** Fragmented MP4 as MSE wants it (issue 6; ISO/IEC 23009-1 style fragments). */
export const FRAG_FLAGS = "frag_keyframe+empty_moov+default_base_moof";
export const FPS = 5;
export const MAX_SIDE = 1280;

/**
 * The clip's size: the displayed aspect ratio, longest side at most 1280,
 * both sides even (yuv420p halves the chroma planes).
 *
 * @example clipSize(1920, 1080) // { width: 1280, height: 720 }
 */
export function clipSize(width: number, height: number) {
  const scale = Math.min(1, MAX_SIDE / Math.max(width, height));
  const even = (n: number) => Math.max(2, Math.round((n * scale) / 2) * 2);
  return { width: even(width), height: even(height) };
}

/** Filters that turn stored pixels upright for each EXIF orientation. */
const ORIENT: Record<number, string[]> = {
  1: [],
  2: ["hflip"],
  3: ["hflip", "vflip"],
  4: ["vflip"],
  5: ["transpose=0"],
  6: ["transpose=1"],
  7: ["transpose=3"],
  8: ["transpose=2"],
};

/**
 * How every copy we make is encoded: H.264 `yuv420p`, faststart, no audio.
 * No look-ahead and no B-frames: x264's look-ahead buffers were a third of
 * the wasm heap at a 1080p clip's peak (80 MB of heap against 55 MB without;
 * issue 14, BENCH.md), for a clip of a few frames that has nothing to look
 * ahead at.
 */
const H264_OUT = [
  "-c:v",
  "libx264",
  "-preset",
  "veryfast",
  "-x264-params",
  "rc-lookahead=0:bframes=0",
  "-pix_fmt",
  "yuv420p",
  "-movflags",
  "+faststart",
  "-an",
];

/** The ffmpeg arguments for a clip of `req` read from `input`, written to `output`. */
export function clipArgs(
  req: Pick<ClipRequest, "width" | "height" | "orientation">,
  input: string,
  output: string,
): string[] {
  const { width, height } = clipSize(req.width, req.height);
  // A slow zoom to 110 % towards the centre: each frame differs from the last.
  const zoom =
    `zoompan=z='1+0.025*on':x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)'` +
    `:d=${FRAMES}:s=${width}x${height}:fps=${FPS}`;
  const filters = [
    ...(ORIENT[req.orientation] ?? []),
    `scale=${width}:${height}:flags=lanczos`,
    "format=yuv420p",
    zoom,
  ];
  return [
    "-noautorotate", // orientation is applied above, from our own EXIF read
    "-i",
    input,
    "-vf",
    filters.join(","),
    "-frames:v",
    String(FRAMES),
    ...H264_OUT,
    output,
  ];
}

/**
 * The most pixels per frame a model's video may have: the decoder refuses
 * larger frames before allocating them (ffmpeg's `max_pixels`), so a video
 * claiming absurd dimensions cannot exhaust the wasm heap.
 */
export const MAX_MODEL_PIXELS = 4096 * 4096;

/** One side of {@link clipSize} as an ffmpeg expression over `iw`/`ih`. */
const sideExpr = (side: "iw" | "ih") =>
  `max(2,round(${side}*min(1,${MAX_SIDE}/max(iw,ih))/2)*2)`;

/**
 * The ffmpeg arguments that re-encode a model's video read from `input` as
 * the contract's MP4 at `output`: its first video stream only, every frame
 * as it came (no frame rate conversion), the size {@link clipSize} gives.
 */
export function transcodeArgs(
  input: string,
  output: string,
  maxPixels = MAX_MODEL_PIXELS,
): string[] {
  const filters = [
    // The size is only known once decoding starts: the same rule as clipSize.
    `scale=w='${sideExpr("iw")}':h='${sideExpr("ih")}':flags=lanczos`,
    "setsar=1",
    "format=yuv420p",
  ];
  return [
    "-max_pixels",
    String(maxPixels),
    "-i",
    input,
    "-map",
    "0:v:0",
    "-vf",
    filters.join(","),
    "-fps_mode",
    "passthrough",
    ...H264_OUT,
    output,
  ];
}

/** Remuxes `out.mp4` as fragmented MP4: the same stream, no second encode. */
const FRAG_REMUX = [
  "-i",
  "out.mp4",
  "-c",
  "copy",
  "-movflags",
  FRAG_FLAGS,
  "-f",
  "mp4",
  "frag.mp4",
];

/** What the child does for {@link ChildEncoder.makeClip}. */
export function clipSpec(
  req: Omit<ClipRequest, "signal">,
): FfmpegSpec {
  return {
    inputs: [{ path: req.input, name: "input" }],
    args: clipArgs(req, "input", "out.mp4"),
    // The same stream, remuxed: no second encode.
    then: FRAG_REMUX,
    outputs: [
      { name: "out.mp4", path: req.output },
      { name: "frag.mp4", path: req.fragOutput },
    ],
  };
}

/**
 * What a transcoder started ahead runs while it waits: two frames of a test
 * pattern through the transcode's own filters, encoder and remux. ffmpeg.wasm
 * is compiled lazily, so the first use of each path costs more than the
 * work; measured on a 10-frame 64×48 video, about half of the transcode.
 */
export const TRANSCODE_WARM_UP: FfmpegSpec = {
  inputs: [],
  args: [
    "-f",
    "lavfi",
    ...transcodeArgs("testsrc=size=64x48:rate=5:duration=0.4", "warm.mp4"),
  ],
  then: FRAG_REMUX.map((a) =>
    a === "out.mp4" ? "warm.mp4" : a === "frag.mp4" ? "warm.frag.mp4" : a
  ),
  outputs: [
    { name: "warm.mp4", path: "" },
    { name: "warm.frag.mp4", path: "" },
  ],
};

/** How much of ffmpeg's log a job's error quotes. */
const ERROR_CHARS = 300;

/** What ffmpeg said last, on one line, short enough for a job's error. */
function lastWords(log: string): string {
  const lines = log.trim().split("\n").map((l) => l.trim())
    // The wasm build's own exit note says nothing about the input.
    .filter((l) => l && l !== "Aborted()");
  return lines.slice(-3).join(" ").slice(-ERROR_CHARS);
}

export interface ChildOptions {
  /** Kill the encoder after this long. */
  timeoutMs: number;
  /** {@link MAX_MODEL_PIXELS} unless a test needs a smaller frame refused. */
  maxModelPixels?: number;
  /** Called with each child's pid as it is spawned (tests count them). */
  onChild?: (pid: number) => void;
}

const CHILD = new URL("./ffmpeg_child.ts", import.meta.url);
const CONFIG = new URL("../deno.json", import.meta.url);

/**
 * The `deno` arguments of an encoder child: it may read anything and write
 * only `writeDir`; V8 runs it with {@link CHILD_V8_FLAGS}. Its command comes
 * on stdin; `warmUp` (as {@link TRANSCODE_WARM_UP}) runs before it is read.
 */
export function childArgs(writeDir: string, warmUp?: FfmpegSpec): string[] {
  return [
    "run",
    "--quiet",
    "--no-prompt",
    `--config=${CONFIG.pathname}`,
    "--allow-read",
    `--allow-write=${writeDir}`,
    `--v8-flags=${CHILD_V8_FLAGS}`,
    CHILD.pathname,
    ...(warmUp ? [JSON.stringify(warmUp)] : []),
  ];
}

/**
 * The encoder child's niceness (`nice(1)`): encoding is batch work, so when
 * the CPU is short, the server's event streams, uploads and pages go first
 * (10,000 listeners on one job: the late events were those sent while the
 * previous job's clip was encoded, BENCH.md). With the CPU free, it runs as
 * fast as before.
 */
export const ENCODER_NICE = 10;

/**
 * One ffmpeg.wasm child process: spawned (and its core loading) at once,
 * given its one command by {@link FfmpegChild.run}. Between the two it
 * waits, ready; {@link FfmpegChild.close} ends it.
 */
export class FfmpegChild {
  readonly #child: Deno.ChildProcess;
  readonly #log: Promise<string>;
  readonly #status: Promise<Deno.CommandStatus>;
  #exited = false;
  #sent = false;

  /**
   * `warmUp`: run once the core is loaded, before the command is read (its
   * outputs only deleted), as {@link TRANSCODE_WARM_UP}.
   */
  constructor(writeDir: string, warmUp?: FfmpegSpec) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: childArgs(writeDir, warmUp),
      stdin: "piped",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    try {
      // Its main thread, which runs the wasm; set before it starts others.
      setPriority(this.#child.pid, ENCODER_NICE);
    } catch { /* not allowed here: it runs at the server's priority */ }
    this.#log = tail(this.#child.stderr, 4000);
    this.#status = this.#child.status.finally(() => (this.#exited = true));
  }

  /** The child's process id. */
  get pid(): number {
    return this.#child.pid;
  }

  /** Whether the child has ended (used, closed, or died waiting). */
  get exited(): boolean {
    return this.#exited;
  }

  /**
   * Sends `spec` and waits for the child to end. Resolves with the exit code
   * and the tail of ffmpeg's log; rejects with {@link EncodeError} when
   * `timeoutMs` (counted from now) passes or `signal` aborts.
   */
  async run(
    spec: FfmpegSpec,
    opts: { timeoutMs: number; signal?: AbortSignal },
  ): Promise<{ code: number; log: string }> {
    if (this.#sent) throw new Error("an ffmpeg child runs one command");
    this.#sent = true;
    let why: EncodeError | null = null;
    const kill = (reason: EncodeError) => {
      why ??= reason;
      this.#kill();
    };
    const timer = setTimeout(
      () =>
        kill(
          new EncodeError("encode_timeout", "Making the video took too long."),
        ),
      opts.timeoutMs,
    );
    const onAbort = () =>
      kill(new EncodeError("encode_aborted", "The job was cancelled."));
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    if (opts.signal?.aborted) onAbort();
    try {
      const writer = this.#child.stdin.getWriter();
      // A child that died meanwhile closed its end: its status says why.
      await writer.write(new TextEncoder().encode(JSON.stringify(spec)))
        .then(() => writer.close())
        .catch(() => {});
      const [log, status] = await Promise.all([this.#log, this.#status]);
      if (why) throw why;
      return { code: status.code, log };
    } finally {
      clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onAbort);
    }
  }

  /** Kills the child unless it has ended; resolves once it has. */
  async close(): Promise<void> {
    this.#kill();
    if (!this.#sent) {
      this.#sent = true;
      await this.#child.stdin.close().catch(() => {});
    }
    await this.#status;
    await this.#log;
  }

  #kill() {
    if (this.#exited) return;
    try {
      this.#child.kill("SIGKILL");
    } catch { /* already gone */ }
  }
}

/**
 * Runs one ffmpeg command in a fresh child process. Resolves with the exit
 * code and the tail of ffmpeg's log; rejects with {@link EncodeError} on
 * timeout/abort.
 */
export async function runFfmpeg(
  spec: FfmpegSpec,
  opts: { timeoutMs: number; signal?: AbortSignal; writeDir: string },
): Promise<{ code: number; log: string }> {
  if (opts.signal?.aborted) {
    throw new EncodeError("encode_aborted", "The job was cancelled.");
  }
  return await new FfmpegChild(opts.writeDir).run(spec, opts);
}

/** The last `max` characters of a stream, read without keeping the rest. */
async function tail(stream: ReadableStream<Uint8Array>, max: number) {
  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of stream) {
    text = (text + decoder.decode(chunk, { stream: true })).slice(-max);
  }
  return text;
}

const NEEDED = [
  "../node_modules/@ffmpeg/core/dist/esm/ffmpeg-core.js",
  "../node_modules/@ffmpeg/core/dist/esm/ffmpeg-core.wasm",
].map((p) => new URL(p, import.meta.url));

/**
 * The child imports ffmpeg.wasm's files from `node_modules` by path (the
 * package's export map sends Deno to a stub), so they must be installed;
 * `deno task` does that, and a bare `deno run main.ts` gets it done here.
 */
export async function ensureFfmpegInstalled(): Promise<void> {
  const missing = async () => {
    for (const url of NEEDED) {
      try {
        await Deno.stat(url);
      } catch {
        return true;
      }
    }
    return false;
  };
  if (!await missing()) return;
  await new Deno.Command(Deno.execPath(), {
    args: ["install", "--quiet", `--config=${CONFIG.pathname}`],
    cwd: new URL("..", import.meta.url).pathname,
    stdout: "null",
  }).output();
  if (await missing()) {
    throw new Error(
      "ffmpeg.wasm is not installed: run `deno install` in the project folder",
    );
  }
}

/** The real encoder: ffmpeg.wasm in a child process per clip. */
export class ChildEncoder implements Encoder {
  constructor(private readonly opts: ChildOptions) {}

  async makeClip(req: ClipRequest): Promise<void> {
    if (req.signal?.aborted) {
      throw new EncodeError("encode_aborted", "The job was cancelled.");
    }
    const { code, log } = await this.#spawn(dirOf(req.output)).run(
      clipSpec(req),
      { timeoutMs: this.opts.timeoutMs, signal: req.signal },
    );
    if (code !== 0) {
      throw new EncodeError(
        "encode_failed",
        `The video could not be made from this image (${lastWords(log)}).`,
      );
    }
  }

  transcode(req: TranscodeRequest): Promise<void> {
    if (req.signal?.aborted) {
      throw new EncodeError("encode_aborted", "The job was cancelled.");
    }
    return this.#transcode(req, this.#spawn(dirOf(req.output)));
  }

  #spawn(writeDir: string, warmUp?: FfmpegSpec): FfmpegChild {
    const child = new FfmpegChild(writeDir, warmUp);
    this.opts.onChild?.(child.pid);
    return child;
  }

  warmTranscoder(opts: { writeDir: string; signal?: AbortSignal }) {
    const child = this.#spawn(opts.writeDir, TRANSCODE_WARM_UP);
    const onAbort = () => void child.close();
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    if (opts.signal?.aborted) onAbort();
    return {
      pid: child.pid,
      transcode: async (req: TranscodeRequest) => {
        opts.signal?.removeEventListener("abort", onAbort);
        if (req.signal?.aborted) {
          await child.close();
          throw new EncodeError("encode_aborted", "The job was cancelled.");
        }
        // A child that died waiting (killed from outside): a fresh one.
        const fresh = child.exited || dirOf(req.output) !== opts.writeDir;
        if (fresh) await child.close();
        await this.#transcode(
          req,
          fresh ? this.#spawn(dirOf(req.output)) : child,
        );
      },
      close: async () => {
        opts.signal?.removeEventListener("abort", onAbort);
        await child.close();
      },
    } satisfies WarmTranscoder;
  }

  async #transcode(req: TranscodeRequest, child: FfmpegChild): Promise<void> {
    const { code, log } = await child.run({
      inputs: [{ path: req.input, name: "input" }],
      args: transcodeArgs("input", "out.mp4", this.opts.maxModelPixels),
      then: FRAG_REMUX,
      outputs: [
        { name: "out.mp4", path: req.output },
        { name: "frag.mp4", path: req.fragOutput },
      ],
    }, { timeoutMs: this.opts.timeoutMs, signal: req.signal });
    if (code === 0 && !EMPTY_OUTPUT.test(log)) return;
    await removeIfThere(req.output);
    await removeIfThere(req.fragOutput);
    if (code === 0) {
      throw new ModelError("model_output", "The model's video has no frames.");
    }
    const size = TOO_LARGE.exec(log);
    throw new ModelError(
      "model_output",
      size
        ? `The model's video is ${size[1]}×${
          size[2]
        }, more pixels a frame than the ${MAX_MODEL_PIXELS} allowed.`
        : NO_VIDEO.test(log)
        ? "The model's output has no video stream."
        : `The model's video could not be read (${lastWords(log)}).`,
    );
  }
}

/** ffmpeg's word for an encode that received no frame at all. */
const EMPTY_OUTPUT = /Output file is empty, nothing was encoded/;
/** ffmpeg's word for `-map 0:v:0` on a file without a video stream. */
const NO_VIDEO = /Stream map '0:v:0' matches no streams/;
/** libavutil's refusal of a frame over `max_pixels` (av_image_check_size2). */
const TOO_LARGE = /Picture size (\d+)x(\d+) exceeds specified max pixel count/;

/** The folder of a file path (the child's only writable place). */
const dirOf = (path: string) => path.slice(0, path.lastIndexOf("/")) || ".";

async function removeIfThere(path: string): Promise<void> {
  await Deno.remove(path).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
}
