/**
 * `deno task compile`'s file, as an operator runs it: built once into a temp
 * dir, copied alone into an empty folder (no project files, no
 * `node_modules`), started there with a PATH that holds no `deno`, and one
 * job taken through it over the API, down to the MP4 made by its own
 * ffmpeg.wasm encoder child.
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

Deno.test("dist/img2vid runs alone: no Deno on PATH, no project files, one job to its MP4", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "img2vid-compile-test-" });
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

    const child = new Deno.Command(`${cwd}/img2vid`, {
      cwd,
      clearEnv: true,
      env: {
        PATH: bin,
        HOME: `${tmp}/home`,
        PORT: "0",
        MODEL_DURATION_MS: "1000",
      },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let text = "";
    let announce!: (url: string) => void;
    const listening = new Promise<string>((r) => (announce = r));
    const pump = async (stream: ReadableStream<Uint8Array>) => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) {
        text += decoder.decode(chunk, { stream: true });
        const m = /listening on (http:\/\/\S+)\//.exec(text);
        if (m) announce(m[1]);
      }
    };
    const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
    try {
      const url = await Promise.race([
        listening,
        child.status.then((s) => {
          throw new Error(`exited (${s.code}) before listening:\n${text}`);
        }),
      ]);
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

      // Its data went where DATA_DIR's default says, beside it.
      assert.ok((await Deno.stat(`${cwd}/data/kv.sqlite3`)).isFile);
    } finally {
      try {
        child.kill("SIGTERM");
      } catch { /* gone already */ }
      const status = await child.status;
      await pumps;
      assert.equal(status.code, 0, `a graceful stop:\n${text}`);
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
