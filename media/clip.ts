/**
 * Makes the 5-frame clip (API.md, "The video") with ffmpeg.wasm in a child
 * Deno process per job, killed when it overruns or the job is cancelled.
 */
import type { FfmpegSpec } from "./ffmpeg_child.ts";

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

/** A model's own video to make into the contract's copies (issue 11). */
export interface TranscodeRequest {
  /** The model's video, any container ffmpeg reads. */
  input: string;
  /** The same outputs as {@link ClipRequest.output} and `fragOutput`. */
  output: string;
  fragOutput: string;
  signal?: AbortSignal;
}

/** Makes a clip or throws {@link EncodeError}. */
export interface Encoder {
  makeClip(req: ClipRequest): Promise<void>;
  /**
   * Makes a model's video into the outputs `makeClip` writes, with the
   * model's own frames (the media step of `MODEL=command` and `cog`).
   * Optional until that step lands; a worker without it fails such jobs.
   */
  transcode?(req: TranscodeRequest): Promise<void>;
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
    "-c:v",
    "libx264",
    "-preset",
    "veryfast",
    "-pix_fmt",
    "yuv420p",
    "-movflags",
    "+faststart",
    "-an",
    output,
  ];
}

export interface ChildOptions {
  /** Kill the encoder after this long. */
  timeoutMs: number;
}

const CHILD = new URL("./ffmpeg_child.ts", import.meta.url);
const CONFIG = new URL("../deno.json", import.meta.url);

/**
 * Runs one ffmpeg command in a child process. Resolves with the exit code and
 * the tail of ffmpeg's log; rejects with {@link EncodeError} on timeout/abort.
 */
export async function runFfmpeg(
  spec: FfmpegSpec,
  opts: { timeoutMs: number; signal?: AbortSignal; writeDir: string },
): Promise<{ code: number; log: string }> {
  if (opts.signal?.aborted) {
    throw new EncodeError("encode_aborted", "The job was cancelled.");
  }
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      "--no-prompt",
      `--config=${CONFIG.pathname}`,
      "--allow-read",
      `--allow-write=${opts.writeDir}`,
      CHILD.pathname,
      JSON.stringify(spec),
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let why: EncodeError | null = null;
  const kill = (reason: EncodeError) => {
    why ??= reason;
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
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
  try {
    const [log, status] = await Promise.all([
      tail(child.stderr, 4000),
      child.status,
    ]);
    if (why) throw why;
    return { code: status.code, log };
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener("abort", onAbort);
  }
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
  "../node_modules/@ffmpeg/ffmpeg/dist/esm/classes.js",
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
    const writeDir = req.output.slice(0, req.output.lastIndexOf("/")) || ".";
    const { code, log } = await runFfmpeg({
      inputs: [{ path: req.input, name: "input" }],
      args: clipArgs(req, "input", "out.mp4"),
      // The same stream, remuxed: no second encode.
      then: [
        "-i",
        "out.mp4",
        "-c",
        "copy",
        "-movflags",
        FRAG_FLAGS,
        "-f",
        "mp4",
        "frag.mp4",
      ],
      outputs: [
        { name: "out.mp4", path: req.output },
        { name: "frag.mp4", path: req.fragOutput },
      ],
    }, { timeoutMs: this.opts.timeoutMs, signal: req.signal, writeDir });
    if (code !== 0) {
      const last = log.trim().split("\n").slice(-3).join(" ");
      throw new EncodeError(
        "encode_failed",
        `The video could not be made from this image (${last.slice(0, 300)}).`,
      );
    }
  }
}
