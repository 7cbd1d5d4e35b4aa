import assert from "node:assert/strict";
import { ChildEncoder } from "../../media/clip.ts";
import { inspectVideo } from "../../tests/_media.ts";
import { queuedJob } from "../../tests/_fakes.ts";
import { ModelError, type ModelRun } from "./adapter.ts";
import {
  CommandAdapter,
  type CommandOptions,
  groupAlive,
  procStat,
} from "./command.ts";
import { MAX_LINE_CHARS, progressOf, readLines } from "./_lines.ts";

const fixtures = new URL("../../tests/fixtures/", import.meta.url);
const FAKE_MODEL = new URL("fake_model.sh", fixtures).pathname;
/** 10 frames at 63×47 (media/transcode_test.ts says how it was made). */
const MODEL_VIDEO = new URL("model.avi", fixtures).pathname;
const MODEL_FRAMES = 10;
/** Long enough never to end a run that should end otherwise. */
const NEVER_MS = 120_000;

/** One run of the fake model in a fresh temp dir, removed by `using`. */
async function fakeModel(
  mode: string,
  opts: Partial<CommandOptions> & { fake?: Record<string, string> } = {},
) {
  const dir = await Deno.makeTempDir();
  const adapter = new CommandAdapter({
    command: `sh ${FAKE_MODEL}`,
    slotId: "command:test",
    timeoutMs: NEVER_MS,
    ...opts,
    env: {
      FAKE_MODE: mode,
      FAKE_DIR: dir,
      FAKE_VIDEO: MODEL_VIDEO,
      ...opts.fake,
    },
  });
  const abort = new AbortController();
  const seen: number[] = [];
  const listeners: ((percent: number) => void)[] = [];
  const job = queuedJob(Date.now());
  const run: ModelRun = {
    job,
    input: new URL("rgb.png", fixtures).pathname,
    output: `${dir}/model.out`,
    progress(percent) {
      seen.push(percent);
      for (const l of listeners) l(percent);
    },
    signal: abort.signal,
    clip: { video: `${dir}/clip.mp4`, fragments: `${dir}/clip.frag.mp4` },
    wait: () => Promise.reject(new Error("the command model keeps no time")),
  };
  return {
    dir,
    job,
    run,
    seen,
    abort,
    start: () => adapter.run(adapter.slots[0], run),
    /** Resolves when the model reports `percent`. */
    reaches: (percent: number) =>
      new Promise<void>((resolve) =>
        listeners.push((p) => p === percent && resolve())
      ),
    note: (name: string) =>
      Deno.readTextFile(`${dir}/${name}`).then((t) => t.trim()),
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

/** Whether process `pid` has ended (gone, or a zombie: dead, unreaped). */
function ended(pid: number): boolean {
  const stat = procStat(pid);
  return stat === null || stat.state === "Z" || stat.state === "X";
}

const ascending = (xs: number[]) => [...xs].sort((a, b) => a - b);

const failsWith =
  (code: ModelError["code"], message?: RegExp) => (e: unknown) =>
    e instanceof ModelError && e.code === code &&
    (!message || message.test(e.message));

Deno.test("progress is read from `progress: N` lines and tqdm bars, and nothing else", () => {
  assert.equal(progressOf("progress: 42"), 42);
  assert.equal(progressOf("[model] Progress: 7.5 (step 3)"), 7.5);
  assert.equal(
    progressOf("Sampling:  42%|████▏     | 21/50 [00:03<00:04,  6.9it/s]"),
    42,
  );
  assert.equal(progressOf("100%|##########| 50/50"), 100);
  assert.equal(progressOf("loss 0.42%, lr 3e-4"), null);
  assert.equal(progressOf("progress: 250"), null);
  assert.equal(progressOf("CUDA out of memory"), null);
});

Deno.test("lines end at \\n and \\r, and a line without end keeps only its tail in memory", async () => {
  const lines: string[] = [];
  const huge = "x".repeat(MAX_LINE_CHARS * 50) + "END";
  const bytes = new TextEncoder().encode(`a\r b\nc\r\n${huge}\nlast`);
  // In small chunks, as a pipe delivers them.
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      for (let at = 0; at < bytes.length; at += 1000) {
        c.enqueue(bytes.subarray(at, at + 1000));
      }
      c.close();
    },
  });
  await readLines(stream, (l) => lines.push(l));
  assert.deepEqual(lines.slice(0, 4), ["a", " b", "c", ""]);
  assert.equal(lines[4].length, MAX_LINE_CHARS);
  assert.ok(lines[4].endsWith("END"));
  assert.equal(lines[5], "last");
});

Deno.test("command model: its progress is heard, its video becomes the contract's clip with its own frames", async () => {
  await using m = await fakeModel("done");
  assert.equal(await m.start(), "video");
  // Two pipes: their order between them is the scheduler's.
  assert.deepEqual(ascending(m.seen), [0, 5, 40, 80, 90.5]);
  // The job's variables reached it.
  assert.equal(
    await m.note("env"),
    `${m.job.id} ${m.job.image.width} ${m.job.image.height}`,
  );
  // The shared media step, as the worker runs it after a "video".
  const output = `${m.dir}/clip.mp4`;
  await new ChildEncoder({ timeoutMs: NEVER_MS }).transcode({
    input: m.run.output,
    output,
    fragOutput: `${m.dir}/frag.mp4`,
  });
  const facts = await inspectVideo(output);
  assert.equal(facts.codec, "h264");
  assert.equal(facts.pixFmt, "yuv420p");
  assert.equal(facts.frames, MODEL_FRAMES);
  assert.deepEqual([facts.width, facts.height], [64, 48]);
  assert.ok(facts.boxes.indexOf("moov") < facts.boxes.indexOf("mdat"));
});

Deno.test("command model: the program gets the worker's environment but not ADMIN_TOKEN", async () => {
  const before = Deno.env.get("ADMIN_TOKEN");
  Deno.env.set("ADMIN_TOKEN", "operator-token-0123456789");
  Deno.env.set("FAKE_INHERITED", "inherited");
  try {
    await using m = await fakeModel("done");
    assert.equal(await m.start(), "video");
    assert.equal(await m.note("secrets"), "unset inherited");
  } finally {
    if (before === undefined) Deno.env.delete("ADMIN_TOKEN");
    else Deno.env.set("ADMIN_TOKEN", before);
    Deno.env.delete("FAKE_INHERITED");
  }
});

Deno.test("command model: a non-zero exit fails with model_failed and the program's last words", async () => {
  await using m = await fakeModel("fail");
  await assert.rejects(
    m.start(),
    failsWith("model_failed", /^RuntimeError: CUDA out of memory$/),
  );
  assert.deepEqual(ascending(m.seen), [30, 50]);
});

Deno.test("command model: a program that cannot start fails with model_failed", async () => {
  await using m = await fakeModel("done", {
    command: "/nonexistent/model --go",
  });
  await assert.rejects(m.start(), failsWith("model_failed", /nonexistent/));
});

Deno.test("command model: garbage for a video is refused by the media step with model_output", async () => {
  await using m = await fakeModel("garbage");
  assert.equal(await m.start(), "video");
  await assert.rejects(
    new ChildEncoder({ timeoutMs: NEVER_MS }).transcode({
      input: m.run.output,
      output: `${m.dir}/clip.mp4`,
      fragOutput: `${m.dir}/frag.mp4`,
    }),
    failsWith("model_output", /could not be read/),
  );
});

Deno.test("command model: ending well without a video fails with model_output", async () => {
  await using m = await fakeModel("none");
  await assert.rejects(m.start(), failsWith("model_output", /no video/));
});

Deno.test("command model: a video over the size limit is refused and removed", async () => {
  await using m = await fakeModel("huge", {
    maxOutputBytes: 1000,
    fake: { FAKE_BYTES: "2000" },
  });
  await assert.rejects(m.start(), failsWith("model_output", /2000 bytes/));
  await assert.rejects(Deno.stat(m.run.output), Deno.errors.NotFound);
});

Deno.test("command model: a video growing past the limit stops the program while it runs", async () => {
  await using m = await fakeModel("growing", {
    maxOutputBytes: 1000,
    outputCheckMs: 10,
    fake: { FAKE_BYTES: "2000" },
  });
  await assert.rejects(m.start(), failsWith("model_output"));
  assert.ok(ended(Number(await m.note("grandchild"))));
});

Deno.test("command model: what a program leaves running when it ends well is stopped too", async () => {
  await using m = await fakeModel("stray");
  assert.equal(await m.start(), "video");
  assert.ok(ended(Number(await m.note("grandchild"))));
});

Deno.test("command model: a cancel stops the whole process group", async () => {
  await using m = await fakeModel("hang");
  const running = m.start();
  await m.reaches(10);
  const grandchild = Number(await m.note("grandchild"));
  assert.ok(!ended(grandchild), "the grandchild runs before the cancel");
  m.abort.abort(new DOMException("cancelled", "AbortError"));
  await assert.rejects(running, (e) => (e as Error).name === "AbortError");
  assert.ok(ended(grandchild));
});

Deno.test("command model: a cancel as the program starts (while its group is written down) stops it too", async () => {
  await using m = await fakeModel("hang");
  m.run.begun = () =>
    m.abort.abort(new DOMException("cancelled", "AbortError"));
  await assert.rejects(m.start(), (e) => (e as Error).name === "AbortError");
});

Deno.test("command model: a timeout fails with model_timeout; SIGTERM first, SIGKILL after the grace for what ignores it", async () => {
  await using m = await fakeModel("hang", {
    timeoutMs: 1_500,
    killGraceMs: 2_000,
    fake: { FAKE_STUBBORN: "1" },
  });
  await assert.rejects(m.start(), failsWith("model_timeout"));
  assert.equal(await m.note("got_term"), "yes");
  assert.ok(ended(Number(await m.note("grandchild"))));
});

Deno.test("command model: a group written down by a dead worker is ended before the next claim; a live worker's, or a reused pid, is left alone", async () => {
  const dir = await Deno.makeTempDir();
  const adapter = new CommandAdapter({
    command: "true",
    slotId: "command:test",
    timeoutMs: NEVER_MS,
    groupsDir: dir,
    killGraceMs: 1_000,
  });
  // An orphan's stand-in: a process group of its own.
  const orphan = new Deno.Command("sleep", { args: ["300"], detached: true })
    .spawn();
  const group = orphan.pid;
  // A worker that has exited: its pid names no process now.
  const dead = new Deno.Command("true").spawn();
  await dead.status;
  const write = (rec: Record<string, unknown>) =>
    Deno.writeTextFile(
      `${dir}/job1.json`,
      JSON.stringify({
        job: "job1",
        host: Deno.hostname(),
        group,
        groupStart: procStat(group)!.start,
        worker: dead.pid,
        workerStart: 1,
        ...rec,
      }),
    );
  try {
    // Written by this process, which lives: its own run.
    await write({ worker: Deno.pid, workerStart: procStat(Deno.pid)!.start });
    assert.deepEqual(await adapter.endOrphans(), []);
    // The leader's pid started at another time: another process now.
    await write({ groupStart: procStat(group)!.start + 1 });
    assert.deepEqual(await adapter.endOrphans(), []);
    assert.ok(groupAlive(group));
    // Another machine's record (a shared DATA_DIR) is not ours to judge.
    await write({ host: `not-${Deno.hostname()}` });
    assert.deepEqual(await adapter.endOrphans(), []);
    assert.ok(groupAlive(group));
    // Its worker is dead: the group goes, and so does the record.
    await write({});
    assert.equal(await adapter.healthy(), true);
    assert.equal(groupAlive(group), false);
    assert.equal((await orphan.status).signal, "SIGTERM");
    assert.deepEqual(await Array.fromAsync(Deno.readDir(dir)), []);
  } finally {
    try {
      orphan.kill("SIGKILL");
    } catch { /* ended */ }
    await orphan.status;
    await Deno.remove(dir, { recursive: true });
  }
});
