/**
 * `deno task bench`: speed and memory of the service, each figure measured in
 * the same run as its baseline; prints a markdown table and writes BENCH.md.
 * Not a test: it asserts nothing. Runs in about two minutes on 2 cores.
 */
import { runFfmpeg } from "../media/clip.ts";
import {
  type ApiJobLike,
  Client,
  SERVER_V8_FLAGS,
  startServer,
} from "./_server.ts";

const rows: [string, string, string, string][] = [];
const row = (what: string, figure: string, baseline: string, goal: string) => {
  rows.push([what, figure, baseline, goal]);
  console.error(`  ${what}: ${figure} (${baseline}; goal ${goal})`);
};
const mb = (bytes: number) => bytes / 1024 / 1024;
const fmt = (n: number, digits = 1) => n.toFixed(digits);

/** Resident memory of a process (and, with `tree`, its children) in bytes. */
async function rss(pid: number, tree = false): Promise<number> {
  const read = async (p: number) => {
    try {
      const status = await Deno.readTextFile(`/proc/${p}/status`);
      return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024;
    } catch {
      return 0;
    }
  };
  let total = await read(pid);
  if (tree) {
    for (const child of await children(pid)) total += await read(child);
  }
  return total;
}

async function children(pid: number): Promise<number[]> {
  const out: number[] = [];
  for await (const task of Deno.readDir(`/proc/${pid}/task`)) {
    try {
      const text = await Deno.readTextFile(
        `/proc/${pid}/task/${task.name}/children`,
      );
      out.push(...text.trim().split(/\s+/).filter(Boolean).map(Number));
    } catch { /* gone */ }
  }
  return out;
}

/** Samples `fn()` every `ms` until `until` settles; returns the largest value. */
async function peak(
  fn: () => Promise<number>,
  until: Promise<unknown>,
  ms = 20,
) {
  let max = await fn();
  let done = false;
  until.finally(() => (done = true));
  while (!done) {
    max = Math.max(max, await fn());
    await new Promise((r) => setTimeout(r, ms)); // a sampling interval, not a wait for an event
  }
  return max;
}

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

async function makeImage(dir: string): Promise<Uint8Array> {
  const path = `${dir}/1080p.png`;
  const { code, log } = await runFfmpeg({
    inputs: [],
    args: [
      "-f",
      "lavfi",
      "-i",
      "testsrc2=size=1920x1080:rate=1",
      "-vf",
      "noise=alls=60:allf=u",
      "-frames:v",
      "1",
      "-update",
      "1",
      "out.png",
    ],
    outputs: [{ name: "out.png", path }],
  }, { timeoutMs: 60_000, writeDir: dir });
  if (code !== 0) throw new Error(log);
  return Deno.readFile(path);
}

const jobId = (body: unknown) => (body as { id: string }).id;

async function pipeline(image: Uint8Array) {
  const modelMs = 3000;
  await using server = await startServer({
    MODEL_DURATION_MS: String(modelMs),
  });
  const pid = server.process.pid;
  await new Client(server.url).json("/healthz");
  const idle = await rss(pid);
  row("server RSS, idle", `${fmt(mb(idle))} MB`, "-", "-");
  const client = new Client(server.url);
  const first = jobId((await client.upload(image)).body);
  const second = jobId((await client.upload(image)).body);
  const serverPeak = peak(
    () => rss(pid),
    client.events(first, (j) => j.status === "done"),
    10,
  );
  const treePeak = peak(
    () => rss(pid, true),
    client.events(first, (j) => j.status === "done"),
    10,
  );
  row(
    "server RSS during a 1080p encode (server process alone)",
    `${fmt(mb(await serverPeak))} MB`,
    `idle ${fmt(mb(idle))} MB`,
    "flat",
  );
  row(
    "server + encoder child RSS, peak during a 1080p encode",
    `${fmt(mb(await treePeak))} MB`,
    `idle ${fmt(mb(idle))} MB`,
    "given back after",
  );
  const { events } = await client.events(second, (j) => j.status === "done");
  const running = events.filter((e) => e.job.status === "processing");
  const span = (running.at(-1)!.at - running[0].at) / 1000;
  const jobs =
    (await client.json<{ jobs: ApiJobLike[] }>("/api/jobs")).body.jobs;
  const [b, a] = jobs;
  const took = (j: ApiJobLike) =>
    Date.parse(j.finishedAt!) - Date.parse(j.startedAt!);
  row(
    `job duration at MODEL_DURATION_MS=${modelMs} (1080p image)`,
    `${took(a)} ms, ${took(b)} ms`,
    `${modelMs} ms`,
    "= model time",
  );
  row(
    "idle gap between two queued jobs",
    `${Date.parse(b.startedAt!) - Date.parse(a.finishedAt!)} ms`,
    "0 ms",
    "≈ 0",
  );
  row(
    "progress events per second (SSE, one client)",
    fmt((running.length - 1) / span),
    "model ticks 5/s",
    "≥ 2",
  );
  const after = await rss(pid, true);
  row(
    "server RSS after the encodes (children gone)",
    `${fmt(mb(after))} MB`,
    `idle ${fmt(mb(idle))} MB`,
    "-",
  );
}

async function utilisation(image: Uint8Array) {
  const modelMs = 1000, n = 20;
  await using server = await startServer({
    MODEL_DURATION_MS: String(modelMs),
    UPLOADS_PER_MINUTE: "1000",
  });
  const client = new Client(server.url);
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    ids.push(jobId((await client.upload(image)).body));
  }
  await client.events(ids.at(-1)!, (j) => j.status === "done");
  const jobs =
    (await client.json<{ jobs: ApiJobLike[] }>("/api/jobs")).body.jobs;
  const start = Math.min(...jobs.map((j) => Date.parse(j.startedAt!)));
  const end = Math.max(...jobs.map((j) => Date.parse(j.finishedAt!)));
  row(
    `model utilisation: ${n} jobs at ${modelMs} ms`,
    `makespan ${fmt((end - start) / 1000, 2)} s`,
    `${n * modelMs / 1000} s`,
    `≥ 99 % (${fmt(100 * n * modelMs / (end - start))} %)`,
  );
}

async function queued() {
  const n = 1000;
  const env = {
    MAX_QUEUE: "2000",
    UPLOADS_PER_MINUTE: "100000",
    MODEL_DURATION_MS: "600000",
  };
  const png = await Deno.readFile(
    new URL("./fixtures/rgb.png", import.meta.url),
  );
  const junk = new TextEncoder().encode("not an image at all");
  // The same 1,000 uploads, accepted (queued) by one server and refused (415)
  // by another: the difference is what the queued jobs themselves hold.
  const grow = async (body: Uint8Array) => {
    await using server = await startServer(env);
    const client = new Client(server.url);
    await client.json("/healthz");
    const before = await rss(server.process.pid);
    for (let i = 0; i < n; i += 50) {
      await Promise.all(Array.from({ length: 50 }, () => client.upload(body)));
    }
    const depth = /img2vid_queue_depth (\d+)/.exec(
      await (await client.fetch("/metrics")).text(),
    )![1];
    return {
      growth: mb((await rss(server.process.pid)) - before),
      depth,
      kv: mb((await Deno.stat(`${server.dataDir}/kv.sqlite3`)).size),
    };
  };
  const accepted = await grow(png);
  const refused = await grow(junk);
  row(
    `${n} queued jobs`,
    `+${fmt(accepted.growth)} MB RSS with ${accepted.depth} queued (KV file ${
      fmt(accepted.kv, 2)
    } MB)`,
    `the same ${n} uploads refused: +${
      fmt(refused.growth)
    } MB, ${refused.depth} queued`,
    `no more than their KV records (${
      fmt(accepted.growth - refused.growth)
    } MB)`,
  );
}

async function post(url: string, body: Uint8Array, headers: HeadersInit) {
  const res = await fetch(url, {
    method: "POST",
    body: body as Uint8Array<ArrayBuffer>,
    headers,
  });
  await res.body?.cancel();
  return res.status;
}

async function ingest(dir: string) {
  const n = 40;
  const size = 5 * 1000 * 1000;
  const image = new Uint8Array(size);
  image.set(
    await Deno.readFile(new URL("./fixtures/rgb.png", import.meta.url)),
  );
  // The bytes after the PNG's end are never read as image; the probe stops at IEND.
  const boundary = "----img2vidbench";
  const enc = new TextEncoder();
  const head = enc.encode(
    `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n` +
      `Content-Type: image/png\r\n\r\n`,
  );
  const tail = enc.encode(`\r\n--${boundary}--\r\n`);
  const multipart = new Uint8Array(head.length + size + tail.length);
  multipart.set(head);
  multipart.set(image, head.length);
  multipart.set(tail, head.length + size);

  // RSS growth is counted from each server's idle RSS before its first upload.
  const idle = new Map<number, number>();
  const measure = async (
    url: string,
    pid: number,
    body: Uint8Array,
    headers: HeadersInit,
  ) => {
    if (!idle.has(pid)) idle.set(pid, await rss(pid));
    const before = idle.get(pid)!;
    const t0 = performance.now();
    const sending = Promise.all(
      Array.from({ length: n }, () => post(url, body, headers)),
    );
    const top = await peak(() => rss(pid), sending, 5);
    const statuses = await sending;
    const seconds = (performance.now() - t0) / 1000;
    if (Deno.env.get("BENCH_DEBUG")) {
      console.error(
        url,
        fmt(mb(top - before)),
        fmt(mb(await rss(pid)) - mb(before)),
      );
    }
    return {
      mbps: mb(n * size) / seconds,
      growth: mb(top - before),
      ok: statuses.filter((s) => s === 202).length,
    };
  };
  const bare = await startBare(dir, "/dev/null");
  const bareUrl = bare.url;
  await using server = await startServer({
    MAX_QUEUE: "10000",
    UPLOADS_PER_MINUTE: "10000",
    MODEL_DURATION_MS: "600000",
  });
  const api = `${server.url}/api/jobs`, pid = server.process.pid;
  // One unmeasured round each to warm the JIT up, then three runs each,
  // keeping the medians: single runs vary ±30 % here.
  await measure(bareUrl, bare.pid, image, {});
  await measure(api, pid, image, { "content-type": "image/png" });
  await measure(api, pid, multipart, {
    "content-type": `multipart/form-data; boundary=${boundary}`,
  });
  type Run = Awaited<ReturnType<typeof measure>>;
  const runs: Record<"bare" | "raw" | "multipart", Run[]> = {
    bare: [],
    raw: [],
    multipart: [],
  };
  const kinds = {
    bare: () => measure(bareUrl, bare.pid, image, {}),
    raw: () => measure(api, pid, image, { "content-type": "image/png" }),
    multipart: () =>
      measure(api, pid, multipart, {
        "content-type": `multipart/form-data; boundary=${boundary}`,
      }),
  };
  // Each run writes 200 MB: flush the page cache's dirty pages first, and
  // rotate the order, so that no kind always pays for the previous one's writeback.
  const order = ["bare", "raw", "multipart"] as const;
  const ROUNDS = 7;
  for (let round = 0; round < ROUNDS; round++) {
    for (let k = 0; k < 3; k++) {
      const kind = order[(round + k) % 3];
      await new Deno.Command("sync").output();
      runs[kind].push(await kinds[kind]());
    }
  }
  await bare.stop();
  const median = (rs: Run[]) => ({
    mbps: quantile(rs.map((r) => r.mbps), 0.5),
    growth: Math.max(...rs.map((r) => r.growth)),
    ok: Math.min(...rs.map((r) => r.ok)),
  });
  const base = median(runs.bare);
  for (const kind of ["raw", "multipart"] as const) {
    const ours = median(runs[kind]);
    // The ratio of each round's pair (close in time), then the median of those.
    const ratio = quantile(
      runs[kind].map((r, i) => r.mbps / runs.bare[i].mbps),
      0.5,
    );
    row(
      `ingest: ${n} concurrent 5 MB uploads (${
        kind === "raw" ? "raw body" : "multipart, as curl -F"
      })`,
      `${fmt(ours.mbps)} MB/s, peak +${
        fmt(ours.growth)
      } MB RSS (${ours.ok}/${n} accepted)`,
      `bare Deno.serve ${fmt(base.mbps)} MB/s, +${fmt(base.growth)} MB`,
      `≥ 0.7× (${fmt(ratio, 2)}×, median of ${ROUNDS} paired runs), ≤ 64 MB`,
    );
  }
}

/** The bare baseline server (tests/bench_bare.ts), serving `file` on GET. */
async function startBare(dir: string, file: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      SERVER_V8_FLAGS,
      new URL("./bench_bare.ts", import.meta.url).pathname,
      dir,
      file,
    ],
    stdout: "piped",
  }).spawn();
  return {
    url: await firstUrl(child.stdout),
    pid: child.pid,
    async stop() {
      child.kill();
      await child.status;
    },
  };
}

async function firstUrl(stream: ReadableStream<Uint8Array>): Promise<string> {
  let text = "";
  const decoder = new TextDecoder();
  const reader = stream.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error("no url");
    text += decoder.decode(value, { stream: true });
    const m = /listening on (http:\/\/\S+?)\/?\s/.exec(text);
    if (m) {
      reader.releaseLock();
      return m[1];
    }
  }
}

async function sse(image: Uint8Array) {
  const listeners = Number(Deno.env.get("SSE_LISTENERS") ?? 1000);
  const modelMs = 4000;
  await using server = await startServer({
    MODEL_DURATION_MS: String(modelMs),
    UPLOADS_PER_MINUTE: "1000",
  });
  const client = new Client(server.url);
  const blocker = jobId((await client.upload(image)).body);
  const id = jobId((await client.upload(image)).body);
  await client.json("/healthz");
  const before = await rss(server.process.pid);
  const latencies: number[] = [];
  let startedAt = 0;
  // Raw sockets instead of fetch: a fetch client with 1,000 streams costs
  // more CPU than the server does, and its queue would be timed, not ours.
  // Every listener reads its stream; one in ten also parses and times events.
  const { hostname, port } = new URL(server.url);
  const request = new TextEncoder().encode(
    `GET /api/jobs/${id}/events HTTP/1.1\r\nHost: ${hostname}:${port}\r\n` +
      `Cookie: ${client.cookie}\r\nAccept: text/event-stream\r\n\r\n`,
  );
  const conns: Deno.Conn[] = [];
  let connected!: () => void;
  const allConnected = new Promise<void>((r) => (connected = r));
  const streams = Array.from({ length: listeners }, async (_, n) => {
    const timed = n % 10 === 0;
    const conn = await Deno.connect({ hostname, port: Number(port) });
    conns.push(conn);
    if (conns.length === listeners) connected();
    await conn.write(request);
    const buf = new Uint8Array(16 * 1024);
    const decoder = new TextDecoder();
    let text = "";
    try {
      for (;;) {
        const got = await conn.read(buf);
        if (got === null) return;
        if (!timed) continue;
        const now = Date.now();
        text += decoder.decode(buf.subarray(0, got), { stream: true });
        let m;
        while ((m = /data: (\{.*?\})\n\n/.exec(text))) {
          text = text.slice(m.index + m[0].length);
          const job = JSON.parse(m[1]) as ApiJobLike;
          if (job.status !== "processing" || job.progress === 0) continue;
          startedAt = Date.parse(job.startedAt!);
          // The worker wrote this progress when elapsed/model first reached it
          // (progress is floored to 0.1 %, i.e. within model/1000 ms).
          latencies.push(now - (startedAt + (job.progress / 100) * modelMs));
        }
      }
    } catch { /* closed */ }
  });
  await allConnected;
  await client.events(blocker, (j) => j.status === "done");
  const during = peak(
    () => rss(server.process.pid),
    client.events(id, (j) => j.status === "done"),
    50,
  );
  const top = await during;
  for (const c of conns) c.close();
  await Promise.all(streams);
  row(
    `SSE: ${listeners} listeners on a running job`,
    `+${fmt(mb(top - before))} MB RSS, latency p50 ${
      fmt(quantile(latencies, 0.5))
    } ms, p99 ${
      fmt(quantile(latencies, 0.99))
    } ms (${latencies.length} events)`,
    `idle ${fmt(mb(before))} MB`,
    "≤ 100 MB, p99 ≤ 100 ms",
  );
}

async function video(dir: string, image: Uint8Array) {
  await using server = await startServer({ MODEL_DURATION_MS: "300" });
  const client = new Client(server.url);
  const id = jobId((await client.upload(image)).body);
  const { events } = await client.events(id, (j) => j.status === "done");
  const url = server.url + events.at(-1)!.job.video!.url;
  const file = `${server.dataDir}/videos/${id}.mp4`;
  const size = (await Deno.stat(file)).size;
  const rounds = 1000, concurrency = 8;
  const run = async (target: string, headers: HeadersInit) => {
    const t0 = performance.now();
    let left = rounds;
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (left-- > 0) {
        const res = await fetch(target, { headers });
        await res.arrayBuffer();
      }
    }));
    return mb(rounds * size) / ((performance.now() - t0) / 1000);
  };
  const bare = await startBare(dir, file);
  const bareUrl = bare.url;
  // Alternate three runs each and keep the medians: single runs vary ±30 % here.
  const bases: number[] = [], ourRuns: number[] = [];
  const media = {
    cookie: client.cookie,
    range: "bytes=0-",
    "sec-fetch-dest": "video",
  };
  await run(bareUrl, {}); // warm-up, both
  await run(url, media);
  for (let i = 0; i < 9; i++) {
    bases.push(await run(bareUrl, {}));
    ourRuns.push(
      await run(url, {
        cookie: client.cookie,
        range: "bytes=0-",
        "sec-fetch-dest": "video",
      }),
    );
  }
  await bare.stop();
  const base = quantile(bases, 0.5), ours = quantile(ourRuns, 0.5);
  const ratio = quantile(ourRuns.map((o, i) => o / bases[i]), 0.5);
  row(
    `video: Range streaming of a ${
      fmt(size / 1024, 0)
    } KB clip, ${rounds}× with ${concurrency} at once`,
    `${fmt(ours)} MB/s`,
    `bare file server ${fmt(base)} MB/s`,
    `≥ 0.8× (${fmt(ratio, 2)}×, median of 9 paired runs)`,
  );
}

if (import.meta.main) {
  const dir = await Deno.makeTempDir({ prefix: "img2vid-bench-" });
  console.error("bench: making a 1080p test image…");
  const image = await makeImage(dir);
  console.error(`bench: 1080p PNG, ${fmt(mb(image.length), 2)} MB`);
  const t0 = performance.now();
  const small = await Deno.readFile(
    new URL("./fixtures/rgb.png", import.meta.url),
  );
  // `deno task bench ingest sse` runs only those parts (and writes no BENCH.md).
  const only = new Set(Deno.args);
  const parts: [string, () => Promise<unknown>][] = [
    ["pipeline", () => pipeline(image)],
    ["utilisation", () => utilisation(small)],
    ["ingest", () => ingest(dir)],
    ["queue", () => queued()],
    ["sse", () => sse(small)],
    ["video", () => video(dir, image)],
  ];
  for (const [name, run] of parts) {
    if (only.size === 0 || only.has(name)) await run();
  }
  await Deno.remove(dir, { recursive: true });
  const mem = Deno.systemMemoryInfo();
  const table = [
    "| measure | figure | baseline (same run) | goal |",
    "| --- | --- | --- | --- |",
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");
  const header =
    `Measured ${
      new Date().toISOString().slice(0, 10)
    } by \`deno task bench\` on ` +
    `${navigator.hardwareConcurrency} cores, ${
      fmt(mem.total / 1024 ** 3, 0)
    } GiB memory, ` +
    `Deno ${Deno.version.deno}; the run took ${
      fmt((performance.now() - t0) / 1000, 0)
    } s.`;
  console.log(table);
  if (only.size === 0) {
    await Deno.writeTextFile(
      new URL("../BENCH.md", import.meta.url),
      `# Benchmarks\n\n${header}\n\n${table}\n`,
    );
    // Written as `deno fmt` would, so that CI's fmt check passes on it.
    const bench = new URL("../BENCH.md", import.meta.url).pathname;
    await new Deno.Command(Deno.execPath(), { args: ["fmt", "--quiet", bench] })
      .output();
  }
}
