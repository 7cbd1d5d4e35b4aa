/**
 * Bench only: the encoder child as it was before issue 14, the baseline of
 * the "encoder" section. It runs ffmpeg.wasm through `@ffmpeg/ffmpeg`'s
 * class, which starts a Worker (a second isolate) and posts every file to it,
 * under V8's default tiers (Liftoff, then TurboFan for hot code).
 *
 * Usage: as media/ffmpeg_child.ts, without its V8 flags.
 */
// @ts-types="../../node_modules/@ffmpeg/ffmpeg/dist/esm/classes.d.ts"
import { FFmpeg } from "@ffmpeg/ffmpeg/classes";
import type { FfmpegSpec } from "../../media/ffmpeg_child.ts";

const CORE_DIR = new URL(
  "../../node_modules/@ffmpeg/core/dist/esm/",
  import.meta.url,
);

async function main(spec: FfmpegSpec): Promise<number> {
  const ffmpeg = new FFmpeg();
  ffmpeg.on("log", ({ message }) => console.error(message));
  await ffmpeg.load({
    coreURL: new URL("ffmpeg-core.js", CORE_DIR).href,
    wasmURL: new URL("ffmpeg-core.wasm", CORE_DIR).href,
  });
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
  const code = await main(JSON.parse(Deno.args[0]) as FfmpegSpec);
  Deno.exit(code);
}
