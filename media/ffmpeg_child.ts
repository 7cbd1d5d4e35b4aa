/**
 * Runs one ffmpeg.wasm command in its own Deno process, so that what the core
 * loads and what an encode peaks at (DESIGN.md, BENCH.md) go back to the OS
 * when the process ends, and a crash or a hang cannot touch the server.
 *
 * Files go in and out with `Deno.readFile`/`Deno.writeFile`: `@ffmpeg/util`'s
 * `fetchFile` does the same for browsers (Blob, URL) and adds nothing here.
 *
 * Usage: deno run --allow-read --allow-write=<dir> media/ffmpeg_child.ts
 * ['<json warm-up spec>'] with the spec ({@link FfmpegSpec}) as JSON on
 * stdin. The core is loaded before the spec is read, so a child can be
 * started ahead of its input (a real model's video, `clip.ts`
 * `warmTranscoder`) and wait, ready; with a warm-up spec it first runs that
 * (a tiny clip through the same filters and encoder: V8 compiles ffmpeg's
 * wasm lazily, on first use) and deletes its outputs. Exit code: ffmpeg's
 * own (0 = success); 1 when stdin closes without a spec (the worker ended
 * the child, or died).
 */
// @ts-types="../node_modules/@ffmpeg/ffmpeg/dist/esm/classes.d.ts"
import { FFmpeg } from "@ffmpeg/ffmpeg/classes";

/** What the child does: copy inputs in, run ffmpeg, copy outputs out. */
export interface FfmpegSpec {
  /** Host file → name inside ffmpeg's in-memory file system. */
  inputs: { path: string; name: string }[];
  args: string[];
  /** A second command, run only if the first succeeded (e.g. a remux). */
  then?: string[];
  /** Name inside ffmpeg's file system → host file (written only on success). */
  outputs: { name: string; path: string }[];
}

const CORE_DIR = new URL(
  "../node_modules/@ffmpeg/core/dist/esm/",
  import.meta.url,
);

async function main(warmUp: FfmpegSpec | null): Promise<number> {
  const ffmpeg = new FFmpeg();
  ffmpeg.on("log", ({ message }) => console.error(message));
  await ffmpeg.load({
    coreURL: new URL("ffmpeg-core.js", CORE_DIR).href,
    wasmURL: new URL("ffmpeg-core.wasm", CORE_DIR).href,
  });
  if (warmUp) {
    await ffmpeg.exec(warmUp.args);
    if (warmUp.then) await ffmpeg.exec(warmUp.then);
    for (const output of warmUp.outputs) {
      await ffmpeg.deleteFile(output.name).catch(() => {});
    }
  }
  const text = await new Response(Deno.stdin.readable).text();
  if (!text.trim()) {
    ffmpeg.terminate();
    return 1;
  }
  const spec = JSON.parse(text) as FfmpegSpec;
  for (const input of spec.inputs) {
    await ffmpeg.writeFile(input.name, await Deno.readFile(input.path));
  }
  let code = await ffmpeg.exec(spec.args);
  if (code === 0 && spec.then) code = await ffmpeg.exec(spec.then);
  if (code === 0) {
    for (const output of spec.outputs) {
      const data = await ffmpeg.readFile(output.name);
      if (typeof data === "string") throw new Error("unexpected text output");
      await Deno.writeFile(output.path, data);
    }
  }
  ffmpeg.terminate();
  return code;
}

if (import.meta.main) {
  const warmUp = Deno.args[0] ? JSON.parse(Deno.args[0]) as FfmpegSpec : null;
  Deno.exit(await main(warmUp));
}
