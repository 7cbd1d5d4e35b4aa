/** What a test needs to know of an MP4, read with the same ffmpeg.wasm child. */
import { runFfmpeg } from "../media/clip.ts";

export interface VideoFacts {
  codec: string;
  pixFmt: string;
  width: number;
  height: number;
  frames: number;
  distinctFrames: number;
  /** Top-level MP4 boxes in file order (faststart: moov before mdat). */
  boxes: string[];
}

export async function inspectVideo(path: string): Promise<VideoFacts> {
  const dir = await Deno.makeTempDir();
  try {
    const { code, log } = await runFfmpeg({
      inputs: [{ path, name: "in.mp4" }],
      args: ["-i", "in.mp4", "-f", "framemd5", "out.txt"],
      outputs: [{ name: "out.txt", path: `${dir}/out.txt` }],
    }, { timeoutMs: 60_000, writeDir: dir });
    if (code !== 0) throw new Error(`ffmpeg could not read the video: ${log}`);
    const stream = /Stream #0:0.*?Video: (\w+).*?, (\w+)\(.*?, (\d+)x(\d+)/
      .exec(log);
    if (!stream) throw new Error(`no video stream in: ${log}`);
    const hashes = (await Deno.readTextFile(`${dir}/out.txt`)).split("\n")
      .filter((l) => /^0,/.test(l)).map((l) => l.split(",").at(-1)!.trim());
    return {
      codec: stream[1],
      pixFmt: stream[2],
      width: Number(stream[3]),
      height: Number(stream[4]),
      frames: hashes.length,
      distinctFrames: new Set(hashes).size,
      boxes: topLevelBoxes(await Deno.readFile(path)),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function topLevelBoxes(bytes: Uint8Array): string[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const boxes: string[] = [];
  for (let at = 0; at + 8 <= bytes.length;) {
    const size = view.getUint32(at);
    boxes.push(String.fromCharCode(...bytes.subarray(at + 4, at + 8)));
    if (size < 8) break;
    at += size;
  }
  return boxes;
}

/** Long enough for ffmpeg.wasm to start and write one 1080p frame. */
const MAKE_IMAGE_TIMEOUT_MS = 60_000;

/**
 * Writes a PNG of a test pattern under uniform noise to `path`: noise keeps
 * PNG from compressing it much, so the file and its decode are as large as a
 * photo's (1920×1080: about 4 MB).
 */
export async function makeNoisyPng(
  path: string,
  width: number,
  height: number,
): Promise<void> {
  const dir = path.slice(0, path.lastIndexOf("/"));
  const { code, log } = await runFfmpeg({
    inputs: [],
    args: [
      "-f",
      "lavfi",
      "-i",
      `testsrc2=size=${width}x${height}:rate=1`,
      "-vf",
      "noise=alls=60:allf=u",
      "-frames:v",
      "1",
      "-update",
      "1",
      "out.png",
    ],
    outputs: [{ name: "out.png", path }],
  }, { timeoutMs: MAKE_IMAGE_TIMEOUT_MS, writeDir: dir });
  if (code !== 0) throw new Error(log);
}
