/**
 * What the bench sections share: the row they report, process memory read
 * from /proc, peak sampling, paired runs against a baseline and the median
 * pair of them, the bare baseline server and the test images.
 */
import { makeNoisyPng } from "../_media.ts";
import { SERVER_V8_FLAGS } from "../_server.ts";

/** One line of BENCH.md's table. */
export interface Row {
  measure: string;
  figure: string;
  /** Measured in the same run as `figure`, so the machine's mood cancels out. */
  baseline: string;
  goal: string;
  /** Which runs the figures come from: "1", or how a figure was picked from many. */
  runs: string;
}

/** A row whose figures all come from one run. */
export const ONE_RUN = "1";

/** What every section is given. */
export interface BenchContext {
  /** A temp dir the section may write to; removed after the bench. */
  dir: string;
  /** A 1080p noisy PNG (large, slow to encode), made on first use. */
  largeImage(): Promise<Uint8Array>;
  /** The small fixture PNG (fast to encode). */
  smallImage: Uint8Array;
}

/** A section of the bench: measures one thing and returns its rows. */
export type Section = (ctx: BenchContext) => Promise<Row[]>;

const BYTES_PER_MB = 1024 * 1024;
/** Bytes as MB (MiB, as `ps` and /proc count them). */
export const mb = (bytes: number) => bytes / BYTES_PER_MB;
/** A figure with a fixed number of decimals. */
export const fmt = (n: number, digits = 1) => n.toFixed(digits);

/** The `q` quantile of `xs` (nearest rank; `xs` is not modified). */
export function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

/** The id of a `POST /api/jobs` answer. */
export const jobId = (body: unknown) => (body as { id: string }).id;

/** /proc reports VmRSS in kB. */
const KB = 1024;

/** Resident memory of a process (and, with `tree`, its children) in bytes. */
export async function rss(pid: number, tree = false): Promise<number> {
  const read = async (p: number) => {
    try {
      const status = await Deno.readTextFile(`/proc/${p}/status`);
      return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) * KB;
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

/** Clock ticks per second in /proc's CPU times (`getconf CLK_TCK`). */
const TICKS_PER_SECOND = 100;

/**
 * CPU time (user + system) of each thread of a process, in ms, summed by
 * thread name; the process's first thread is "main".
 */
export async function threadCpu(pid: number): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for await (const task of Deno.readDir(`/proc/${pid}/task`)) {
    let stat: string;
    try {
      stat = await Deno.readTextFile(`/proc/${pid}/task/${task.name}/stat`);
    } catch {
      continue; // ended meanwhile
    }
    const name = task.name === String(pid)
      ? "main"
      : stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    // proc(5): utime and stime are fields 14 and 15, after "pid (comm) ".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ms = (Number(fields[11]) + Number(fields[12])) * 1000 /
      TICKS_PER_SECOND;
    out.set(name, (out.get(name) ?? 0) + ms);
  }
  return out;
}

/** Samples `fn()` every `everyMs` until `until` settles; returns the largest value. */
export async function peak(
  fn: () => Promise<number>,
  until: Promise<unknown>,
  everyMs: number,
): Promise<number> {
  let max = await fn();
  let done = false;
  until.finally(() => (done = true));
  while (!done) {
    max = Math.max(max, await fn());
    // A sampling interval, not a wait for an event.
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return max;
}

/**
 * Runs every kind once unmeasured (to warm the JIT up), then `rounds` rounds
 * of one run per kind, rotating the order so that no kind always follows the
 * same one (and pays for its leftovers, such as dirty pages). Run `i` of each
 * kind belongs to round `i`: those are the pairs that {@link medianPair} compares.
 */
export async function pairedRuns<K extends string, T>(
  rounds: number,
  kinds: Record<K, () => Promise<T>>,
  beforeEach: () => Promise<unknown> = () => Promise.resolve(),
): Promise<Record<K, T[]>> {
  const names = Object.keys(kinds) as K[];
  for (const name of names) await kinds[name]();
  const runs = Object.fromEntries(names.map((k) => [k, [] as T[]])) as Record<
    K,
    T[]
  >;
  for (let round = 0; round < rounds; round++) {
    for (let k = 0; k < names.length; k++) {
      const name = names[(round + k) % names.length];
      await beforeEach();
      runs[name].push(await kinds[name]());
    }
  }
  return runs;
}

/** The pair of runs whose ratio is the median one, and the spread of all ratios. */
export interface MedianPair {
  ours: number;
  base: number;
  /** `ours / base` of this very pair: what the row prints beside the two. */
  ratio: number;
  minRatio: number;
  maxRatio: number;
  rounds: number;
}

/**
 * Of paired runs (run `i` of ours and of the baseline close in time), the
 * pair with the median ratio. Printing that pair's own figures beside its
 * ratio keeps the row consistent: dividing the printed figures gives the
 * printed ratio, which a ratio of two separate medians would not. Use an odd
 * number of rounds so that the median is one pair, not a mean of two.
 */
export function medianPair(ours: number[], base: number[]): MedianPair {
  const ratios = ours.map((o, i) => ({ i, ratio: o / base[i] }))
    .sort((a, b) => a.ratio - b.ratio);
  const mid = ratios[Math.floor((ratios.length - 1) / 2)];
  return {
    ours: ours[mid.i],
    base: base[mid.i],
    ratio: mid.ratio,
    minRatio: ratios[0].ratio,
    maxRatio: ratios.at(-1)!.ratio,
    rounds: ratios.length,
  };
}

/** The `runs` cell of a row built from {@link medianPair}. */
export const medianPairRuns = (p: MedianPair) =>
  `the median pair of ${p.rounds} paired runs (ratios ${fmt(p.minRatio, 2)}–${
    fmt(p.maxRatio, 2)
  }×)`;

/** The bare baseline server (bare_server.ts), serving `file` on GET. */
export async function startBare(dir: string, file: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      SERVER_V8_FLAGS,
      new URL("./bare_server.ts", import.meta.url).pathname,
      dir,
      file,
    ],
    stdout: "piped",
  }).spawn();
  return {
    url: await firstUrl(child.stdout),
    pid: child.pid,
    async [Symbol.asyncDispose]() {
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
    if (done) throw new Error("the bare server exited before listening");
    text += decoder.decode(value, { stream: true });
    const m = /listening on (http:\/\/\S+?)\/?\s/.exec(text);
    if (m) {
      reader.releaseLock();
      return m[1];
    }
  }
}

/** The small PNG of the tests' fixtures. */
export const readSmallImage = () =>
  Deno.readFile(new URL("../fixtures/rgb.png", import.meta.url));

/**
 * A 1080p PNG of a test pattern under uniform noise: noise keeps PNG from
 * compressing it much, so the upload and the decode are as large as a photo's.
 */
export async function makeLargeImage(dir: string): Promise<Uint8Array> {
  const path = `${dir}/1080p.png`;
  await makeNoisyPng(path, 1920, 1080);
  return Deno.readFile(path);
}
