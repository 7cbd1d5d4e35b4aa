/**
 * `deno task compile`: writes `dist/img2vid`, one file that runs the whole
 * service (page, API, model worker, ffmpeg.wasm encoder) on a Linux machine
 * with no Deno and no `node_modules`.
 *
 * Why not `deno compile`: its output is `denort` (a slim runtime that only
 * Deno's own download site serves, not npm) with the program appended, and
 * no machine of this project reaches that site (`deno compile` stops at
 * "Setting up base binary"; the full `deno` binary given as `DENORT_BIN`
 * ignores the appended program and opens a REPL). So the file is built
 * from what npm does ship: a POSIX `sh` header, then a gzipped tar of the
 * `deno` binary running this build and the service's own files (sources,
 * the islands bundle, the `node_modules` that `deno install` made, less
 * what only the tests use). On its first start it unpacks
 * itself once into a cache folder named after its own hash, then `exec`s
 * Deno there with the permissions and V8 flags of `deno task start`,
 * `--cached-only --frozen` (it never fetches anything). The encoder child
 * (`media/clip.ts`) is that same unpacked Deno, on the unpacked
 * `media/ffmpeg_child.ts` and `@ffmpeg/core` files, as in a checkout.
 *
 * Usage: deno run -A tools/compile.ts [--output=dist/img2vid]
 * (after `deno task build`, which `deno task compile` runs first).
 */
import { parseArgs } from "node:util";

const ROOT = new URL("../", import.meta.url).pathname;

/** `deno task start`'s flags (deno.json), so the file runs what users run. */
export const RUN_FLAGS = [
  "--allow-net",
  "--allow-env",
  "--allow-read",
  "--allow-write",
  "--allow-run",
  "--allow-sys",
  "--v8-flags=--max-semi-space-size=4",
];

/** What a server does not need: tests, docs, CI, build output, local data. */
const EXCLUDE = [
  "./.git",
  "./tests",
  "./docs",
  "./.ci",
  "./dist",
  "./data",
  "./coverage",
  "*_test.ts",
  "*_test.tsx",
  "*.md",
];

/** npm packages only the tests use (a browser driver): left out of the file. */
const TEST_ONLY = ["playwright-core"];

/**
 * Takes {@link TEST_ONLY} out of the staged copy: its import, its lock
 * entries (so that `--frozen` still holds) and its `node_modules` folders.
 */
export async function dropTestOnly(app: string): Promise<void> {
  const config = JSON.parse(await Deno.readTextFile(`${app}/deno.json`));
  const lock = JSON.parse(await Deno.readTextFile(`${app}/deno.lock`));
  for (const name of TEST_ONLY) {
    delete config.imports?.[name];
    delete config.imports?.[`${name}/`];
    const spec = `npm:${name}@`;
    for (const [key, version] of Object.entries(lock.specifiers ?? {})) {
      if (!key.startsWith(spec)) continue;
      delete lock.specifiers[key];
      delete lock.npm?.[`${name}@${version}`];
    }
    const deps: string[] = lock.workspace?.dependencies ?? [];
    if (lock.workspace) {
      lock.workspace.dependencies = deps.filter((d) => !d.startsWith(spec));
    }
    await Deno.remove(`${app}/node_modules/${name}`, { recursive: true })
      .catch(() => {});
    for await (const e of Deno.readDir(`${app}/node_modules/.deno`)) {
      if (e.name.startsWith(`${name}@`)) {
        await Deno.remove(`${app}/node_modules/.deno/${e.name}`, {
          recursive: true,
        });
      }
    }
  }
  await Deno.writeTextFile(
    `${app}/deno.json`,
    JSON.stringify(config, null, 2) + "\n",
  );
  await Deno.writeTextFile(
    `${app}/deno.lock`,
    JSON.stringify(lock, null, 2) + "\n",
  );
}

/** Bytes of the header, fixed so the header can say where the tar starts. */
const SKIP_WIDTH = 10;

/**
 * The header. `SKIP` is the 1-based byte where the tar starts (for `tail -c
 * +N`); `HASH` names the cache folder, so a new build unpacks afresh and two
 * processes starting at once (a web and a worker) never see half a folder:
 * each unpacks into a folder of its own and renames it into place.
 */
function header(hash: string, skip: number): string {
  return `#!/bin/sh
# img2vid: one file to deploy. A POSIX sh header, then a gzipped tar of Deno
# and the service; unpacked once into $IMG2VID_CACHE (or systemd's
# $CACHE_DIRECTORY, or $XDG_CACHE_HOME, or ~/.cache), then run from there.
set -eu
HASH=${hash}
SKIP=${String(skip).padStart(SKIP_WIDTH, "0")}
base="\${IMG2VID_CACHE:-\${CACHE_DIRECTORY:-\${XDG_CACHE_HOME:-\${HOME:-/tmp}/.cache}}}"
dir="$base/img2vid-$HASH"
if [ ! -f "$dir/.complete" ]; then
  echo "img2vid: unpacking into $dir (first start of this build)" >&2
  mkdir -p "$base"
  tmp="$dir.$$.tmp"
  rm -rf "$tmp"
  mkdir "$tmp"
  tail -c +"$SKIP" "$0" | tar -xzf - -C "$tmp"
  : >"$tmp/.complete"
  # Another process may have won the race: keep its folder, drop ours.
  mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"
fi
export DENO_DIR="$dir/deno_dir" DENO_NO_UPDATE_CHECK=1 DENO_NO_PROMPT=1
exec "$dir/deno" run --cached-only --frozen --config="$dir/app/deno.json" \\
  ${RUN_FLAGS.join(" ")} "$dir/app/main.ts" "$@"
`;
}

async function sh(script: string, cwd = ROOT): Promise<void> {
  const { code, stderr } = await new Deno.Command("sh", {
    args: ["-c", script],
    cwd,
    stdout: "inherit",
    stderr: "piped",
  }).output();
  if (code !== 0) {
    throw new Error(`${script}\n${new TextDecoder().decode(stderr)}`);
  }
}

const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/** Builds the file at `output`; returns its size in bytes. */
export async function compile(output: string): Promise<number> {
  for (const needed of ["static/islands.js", "node_modules/@ffmpeg/core"]) {
    await Deno.stat(`${ROOT}${needed}`).catch(() => {
      throw new Error(
        `${needed} is missing: run \`deno install\` and \`deno task build\``,
      );
    });
  }
  const stage = await Deno.makeTempDir({ prefix: "img2vid-compile-" });
  try {
    await Deno.mkdir(`${stage}/app`);
    const excludes = EXCLUDE.map((p) => `--exclude=${quote(p)}`).join(" ");
    // tar keeps node_modules' symlinks as they are (`deno install`'s layout).
    await sh(`tar -cf - ${excludes} . | tar -xf - -C ${quote(`${stage}/app`)}`);
    await dropTestOnly(`${stage}/app`);
    await Deno.copyFile(Deno.execPath(), `${stage}/deno`);
    await Deno.chmod(`${stage}/deno`, 0o755);
    const payload = `${stage}.tgz`;
    try {
      // gzip -1: a third larger than -9 and several times faster to make.
      await sh(`tar -cf - deno app | gzip -1 > ${quote(payload)}`, stage);
      const bytes = await Deno.readFile(payload);
      const digest = new Uint8Array(
        await crypto.subtle.digest("SHA-256", bytes),
      );
      const hash = [...digest.slice(0, 8)]
        .map((b) => b.toString(16).padStart(2, "0")).join("");
      // The header's length does not depend on SKIP's value (fixed width).
      const length = new TextEncoder().encode(header(hash, 0)).length;
      const head = new TextEncoder().encode(header(hash, length + 1));
      await Deno.mkdir(output.slice(0, output.lastIndexOf("/")) || ".", {
        recursive: true,
      });
      const file = await Deno.open(output, {
        write: true,
        create: true,
        truncate: true,
        mode: 0o755,
      });
      try {
        await file.write(head);
        for (let at = 0; at < bytes.length;) {
          at += await file.write(bytes.subarray(at));
        }
      } finally {
        file.close();
      }
      await Deno.chmod(output, 0o755);
      return head.length + bytes.length;
    } finally {
      await Deno.remove(payload).catch(() => {});
    }
  } finally {
    await Deno.remove(stage, { recursive: true });
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { output: { type: "string", default: `${ROOT}dist/img2vid` } },
  });
  const size = await compile(values.output!);
  console.log(
    `${values.output}: ${
      (size / 1024 ** 2).toFixed(1)
    } MiB (Linux ${Deno.build.arch}, Deno ${Deno.version.deno})`,
  );
}
