/**
 * `deno task compile`'s file, as an operator runs it: built once into a temp
 * dir, copied alone into an empty folder (no project files, no
 * `node_modules`), started there with a PATH that holds no `deno`, and jobs
 * taken through it over the API, down to the MP4 made by its own ffmpeg.wasm
 * encoder child: first as one process, then as a web and a worker process
 * started at once from a fresh cache (both unpack; one folder wins).
 */
import assert from "node:assert/strict";
import { compile } from "../tools/compile.ts";
import { type ApiJobLike, Client, fixture } from "./_server.ts";

/** The only programs the file's header may use. */
const TOOLS = ["sh", "tail", "tar", "gzip", "mkdir", "rm", "mv"];

async function which(tool: string): Promise<string> {
  for (const dir of ["/usr/bin", "/bin", "/usr/local/bin"]) {
    const path = `${dir}/${tool}`;
    if (await Deno.stat(path).then(() => true, () => false)) return path;
  }
  throw new Error(`${tool} not found`);
}

interface Running {
  /** What it printed when ready (the URL's capture for a web process). */
  ready: string;
  output(): string;
  /** SIGTERM; resolves with the exit code. */
  stop(): Promise<number>;
}

/** Starts `file` in `cwd` with only `env` (no inherited variables). */
async function start(
  file: string,
  cwd: string,
  env: Record<string, string>,
  ready: RegExp,
): Promise<Running> {
  const child = new Deno.Command(file, {
    cwd,
    clearEnv: true,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  let announce!: (s: string) => void;
  const seen = new Promise<string>((r) => (announce = r));
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      text += decoder.decode(chunk, { stream: true });
      const m = ready.exec(text);
      if (m) announce(m[1] ?? m[0]);
    }
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  let stopped: Promise<number> | null = null;
  const stop = () =>
    stopped ??= (async () => {
      try {
        child.kill("SIGTERM");
      } catch { /* gone already */ }
      const status = await child.status;
      await pumps;
      return status.code;
    })();
  try {
    const said = await Promise.race([
      seen,
      child.status.then((s) => {
        throw new Error(`exited (${s.code}) before ready:\n${text}`);
      }),
    ]);
    return { ready: said, output: () => text, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** Uploads one picture and fetches its video through the owner's `video.url`. */
async function oneJob(url: string): Promise<void> {
  const client = new Client(url);
  const up = await client.upload(await fixture("rgb.png"));
  assert.equal(up.status, 202, JSON.stringify(up.body));
  const id = (up.body as unknown as ApiJobLike).id;
  const { events } = await client.events(
    id,
    (j) => j.status === "done" || j.status === "failed",
  );
  const done = events.at(-1)!.job;
  assert.equal(done.status, "done", JSON.stringify(done.error));
  const video = await client.fetch(done.video!.url);
  assert.equal(video.status, 200);
  assert.equal(video.headers.get("content-type"), "video/mp4");
  const bytes = new Uint8Array(await video.arrayBuffer());
  assert.equal(new TextDecoder().decode(bytes.subarray(4, 8)), "ftyp");
}

const LISTENING = /listening on (http:\/\/[^/"\s]+)/;

Deno.test("dist/img2vid runs alone: no Deno on PATH, no project files, jobs to their MP4, as one process and as web + worker", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "img2vid-compile-test-" });
  const running: Running[] = [];
  try {
    const built = `${tmp}/build/img2vid`;
    await compile(built);

    // An empty folder with the file alone, a PATH of the header's tools only.
    const cwd = `${tmp}/srv`;
    const bin = `${tmp}/bin`;
    await Deno.mkdir(cwd);
    await Deno.mkdir(bin);
    await Deno.copyFile(built, `${cwd}/img2vid`);
    await Deno.chmod(`${cwd}/img2vid`, 0o755);
    for (const tool of TOOLS) {
      await Deno.symlink(await which(tool), `${bin}/${tool}`);
    }
    assert.deepEqual(
      [...Deno.readDirSync(cwd)].map((e) => e.name),
      ["img2vid"],
    );
    const base = {
      PATH: bin,
      HOME: `${tmp}/home`,
      PORT: "0",
      MODEL_DURATION_MS: "1000",
    };

    const all = await start(`${cwd}/img2vid`, cwd, base, LISTENING);
    running.push(all);
    await oneJob(all.ready);
    // Its data went where DATA_DIR's default says, beside it.
    assert.ok((await Deno.stat(`${cwd}/data/kv.sqlite3`)).isFile);
    assert.equal(await all.stop(), 0, `a graceful stop:\n${all.output()}`);

    // A web and a worker process of a build not yet unpacked, at once.
    const split = {
      ...base,
      IMG2VID_CACHE: `${tmp}/cache`,
      DATA_DIR: `${tmp}/split`,
    };
    const both = await Promise.allSettled([
      start(`${cwd}/img2vid`, cwd, { ...split, ROLE: "web" }, LISTENING),
      start(
        `${cwd}/img2vid`,
        cwd,
        { ...split, ROLE: "worker" },
        /worker running/,
      ),
    ]);
    for (const r of both) if (r.status === "fulfilled") running.push(r.value);
    for (const r of both) if (r.status === "rejected") throw r.reason;
    const [web, worker] = running.slice(1);
    await oneJob(web.ready);
    const unpacked = [...Deno.readDirSync(`${tmp}/cache`)].map((e) => e.name);
    assert.equal(unpacked.length, 1, `one folder, no leftovers: ${unpacked}`);
    assert.match(unpacked[0], /^img2vid-[0-9a-f]{16}$/);
    // What only the tests use (a browser driver) is not in the file.
    const app = `${tmp}/cache/${unpacked[0]}/app`;
    assert.ok((await Deno.stat(`${app}/node_modules/hono`)).isDirectory);
    await assert.rejects(
      Deno.stat(`${app}/node_modules/playwright-core`),
      Deno.errors.NotFound,
    );
    assert.doesNotMatch(
      await Deno.readTextFile(`${app}/deno.json`),
      /playwright/,
    );
    assert.equal(await worker.stop(), 0, worker.output());
    assert.equal(await web.stop(), 0, web.output());
  } finally {
    await Promise.all(running.map((r) => r.stop()));
    await Deno.remove(tmp, { recursive: true });
  }
});
