/**
 * Runs one ffmpeg.wasm command in its own Deno process, so that what the core
 * loads and what an encode peaks at (DESIGN.md, BENCH.md) go back to the OS
 * when the process ends, and a crash or a hang cannot touch the server.
 *
 * The core (`@ffmpeg/core`, an Emscripten module) runs here in the main
 * isolate, not behind `@ffmpeg/ffmpeg`'s class: that class starts a Worker (a
 * second isolate) and posts every file to it, which buys nothing in a process
 * that exists for one command. What else is kept out of the peak (issue 14,
 * measured on a 1921×1081 PNG in BENCH.md):
 * - the 31 MB of wasm bytes are dropped once compiled and collected (`gc()`,
 *   `--expose-gc`) before ffmpeg runs, rather than whenever V8 gets to them;
 * - V8 runs the wasm with Liftoff only ({@link CHILD_V8_FLAGS}): TurboFan's
 *   second copy of the hot code and its compile zones cost ~85 MB at the peak
 *   for a few frames' work;
 * - x264 has no look-ahead and no B-frames (media/clip.ts), which keeps its
 *   frame buffers out of the wasm heap.
 *
 * Files go in and out with `Deno.readFile`/`Deno.writeFile` and the core's
 * in-memory file system.
 *
 * Usage: deno run --allow-read --allow-write=<dir> --v8-flags=<CHILD_V8_FLAGS>
 * media/ffmpeg_child.ts ['<json warm-up spec>'] with the spec
 * ({@link FfmpegSpec}) as JSON on stdin. The core is loaded before the spec is
 * read, so a child can be started ahead of its input (a real model's video,
 * `clip.ts` `warmTranscoder`) and wait, ready; with a warm-up spec it first
 * runs that (a tiny clip through the same filters and encoder: V8 compiles
 * ffmpeg's wasm lazily, on first use) and deletes its outputs. Exit code:
 * ffmpeg's own (0 = success); 1 when stdin closes without a spec (the worker
 * ended the child, or died).
 */

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

/**
 * V8 flags the child runs with: Liftoff only (no TurboFan tier-up), and `gc()`
 * so that the wasm bytes are gone before the encode starts.
 */
export const CHILD_V8_FLAGS = "--liftoff-only,--expose-gc";

const CORE_DIR = new URL(
  "../node_modules/@ffmpeg/core/dist/esm/",
  import.meta.url,
);
const CORE_JS = new URL("ffmpeg-core.js", CORE_DIR);
const CORE_WASM = new URL("ffmpeg-core.wasm", CORE_DIR);

/** The part of the Emscripten module this child uses. */
interface Core {
  FS: {
    writeFile(name: string, data: Uint8Array): void;
    readFile(name: string): Uint8Array;
    unlink(name: string): void;
  };
  setLogger(log: (entry: { message: string }) => void): void;
  exec(...args: string[]): number;
  ret: number;
  reset(): void;
}

type CoreFactory = (options: Record<string, unknown>) => Promise<Core>;

async function loadCore(): Promise<Core> {
  // The core is built for a Worker and reads `self.location` when it starts;
  // a Deno main isolate has no location unless one is given.
  Object.defineProperty(globalThis, "location", {
    value: CORE_JS,
    configurable: true,
  });
  const factory = (await import(CORE_JS.href)).default as CoreFactory;
  return await factory({
    // Compiled here rather than by the core's fetch, so that no reference to
    // the bytes outlives the compile.
    instantiateWasm(
      imports: WebAssembly.Imports,
      receive: (instance: WebAssembly.Instance) => void,
    ) {
      compile(imports).then(receive);
      return {};
    },
  });
}

async function compile(imports: WebAssembly.Imports) {
  const module = await WebAssembly.compile(await Deno.readFile(CORE_WASM));
  return await WebAssembly.instantiate(module, imports);
}

/** Collects what is unreachable now, where `--expose-gc` allows it. */
function collect() {
  (globalThis as { gc?: () => void }).gc?.();
}

async function main(warmUp: FfmpegSpec | null): Promise<number> {
  const core = await loadCore();
  core.setLogger(({ message }) => console.error(message));
  const run = (args: string[]) => {
    core.exec(...args);
    const code = core.ret;
    core.reset();
    return code;
  };
  if (warmUp) {
    if (run(warmUp.args) === 0 && warmUp.then) run(warmUp.then);
    for (const output of warmUp.outputs) {
      try {
        core.FS.unlink(output.name);
      } catch {
        // Not written: nothing to delete.
      }
    }
  }
  const text = await new Response(Deno.stdin.readable).text();
  if (!text.trim()) return 1;
  const spec = JSON.parse(text) as FfmpegSpec;
  for (const input of spec.inputs) {
    core.FS.writeFile(input.name, await Deno.readFile(input.path));
  }
  collect();
  let code = run(spec.args);
  if (code === 0 && spec.then) code = run(spec.then);
  if (code === 0) {
    for (const output of spec.outputs) {
      await Deno.writeFile(output.path, core.FS.readFile(output.name));
    }
  }
  return code;
}

if (import.meta.main) {
  const warmUp = Deno.args[0] ? JSON.parse(Deno.args[0]) as FfmpegSpec : null;
  Deno.exit(await main(warmUp));
}
