/**
 * Bench section "ingest": many large uploads at once, as a raw body and as
 * multipart, against a bare `Deno.serve` that only writes the body to a file.
 * Throughput and the server's extra memory while they stream in (its process
 * tree's RSS, read from /proc as `ps` would); and the same raw uploads with
 * API.md's per-client limits at their defaults against a server whose limits
 * are set too high to matter.
 */
import { readMultipart } from "../../routes/_multipart.ts";
import { startServer } from "../_server.ts";
import {
  type BenchContext,
  fmt,
  mb,
  medianPair,
  medianPairRuns,
  ONE_RUN,
  pairedRuns,
  peak,
  quantile,
  type Row,
  rss,
  startBare,
  threadCpu,
} from "./_util.ts";

/** Uploads in flight at once. */
const CONCURRENT = 40;
/** Bytes per upload: near the upload limit, where memory would show. */
const UPLOAD_BYTES = 5 * 1000 * 1000;
/** Odd, so that the median ratio is one pair's (see medianPair). */
const ROUNDS = 9;
/** RSS sampling interval while the uploads stream in. */
const SAMPLE_MS = 5;
/**
 * curl 7.88's boundary shape (24 dashes and 16 hex digits; browsers send 38
 * characters): the delimiter search skips up to a delimiter's length per look,
 * so a shorter boundary costs the parser more CPU per byte (README, "Uploads").
 */
const BOUNDARY = "------------------------1fb8bf57e975d836";
const ENV = {
  MAX_QUEUE: "10000",
  UPLOADS_PER_MINUTE: "10000",
  /** Long enough that no encode runs while uploads are timed. */
  MODEL_DURATION_MS: String(10 * 60_000),
};
/**
 * Limits too high to refuse anything here, so that the rows above measure
 * the upload path itself. Each upload names its own client address (behind
 * `TRUST_PROXY=1`), as many visitors would, on both servers.
 */
const LIMITS_HIGH = {
  TRUST_PROXY: "1",
  UPLOADS_PER_MINUTE_PER_CLIENT: "1000000",
  MAX_WAITING_PER_SESSION: "1000000",
  MAX_WAITING_PER_CLIENT: "1000000",
  MAX_UPLOADS_IN_FLIGHT: "10000",
  MAX_UPLOADS_IN_FLIGHT_PER_CLIENT: "10000",
};
/** Every limit at its default (API.md); only the model is slowed as above. */
const LIMITS_DEFAULT = {
  TRUST_PROXY: "1",
  MODEL_DURATION_MS: ENV.MODEL_DURATION_MS,
};
/** Issue 14: the median pair at least 0.95× the bare server. */
const GOAL_RATIO = 0.95;
const GOAL_LIMITS_RATIO = 0.95;
/** Issue 14: the server's process tree, measured from outside. */
const GOAL_GROWTH_MB = 48;
const ACCEPTED = 202;

interface Run {
  mbps: number;
  /** Peak RSS of the process tree above its idle RSS, in MB. */
  growth: number;
  accepted: number;
  /** The server's CPU time (all its threads) per upload, in ms. */
  cpuMs: number;
}

/** The median of `xs`. */
const median = (xs: number[]) => quantile(xs, 0.5);

/** A process's CPU time over all its threads, in ms. */
const cpuOf = async (pid: number) =>
  [...(await threadCpu(pid)).values()].reduce((a, b) => a + b, 0);

/** A new client address per upload: `10.a.b.c`. */
let nextClient = 0;
const forwardedFor = () => {
  const n = ++nextClient;
  return `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
};

async function post(url: string, body: Uint8Array, headers: HeadersInit) {
  const res = await fetch(url, {
    method: "POST",
    body: body as Uint8Array<ArrayBuffer>,
    headers: { ...headers, "x-forwarded-for": forwardedFor() },
  });
  await res.body?.cancel();
  return res.status;
}

/** A multipart body as `curl -F image=@a.png` sends it. */
function multipartOf(image: Uint8Array, boundary = BOUNDARY): Uint8Array {
  const enc = new TextEncoder();
  const head = enc.encode(
    `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n` +
      `Content-Type: image/png\r\n\r\n`,
  );
  const tail = enc.encode(`\r\n--${boundary}--\r\n`);
  const body = new Uint8Array(head.length + image.length + tail.length);
  body.set(head);
  body.set(image, head.length);
  body.set(tail, head.length + image.length);
  return body;
}

/** A boundary as short as a hand-written client might pick. */
const SHORT_BOUNDARY = "----img2vidbench";
/** Parses per timing of the parser alone; the fastest of its rounds counts. */
const PARSES = 20;
const PARSE_ROUNDS = 7;

/** `body` as a byte stream in 64 KiB reads, as Deno hands a request body. */
function byteStream(body: Uint8Array): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    type: "bytes",
    pull(c) {
      const view = c.byobRequest!.view!;
      const n = Math.min(view.byteLength, body.length - at, 64 * 1024);
      if (n === 0) {
        c.close();
        c.byobRequest!.respond(0);
        return;
      }
      new Uint8Array(view.buffer, view.byteOffset, n).set(
        body.subarray(at, at += n),
      );
      c.byobRequest!.respond(n);
    },
  });
}

/**
 * The multipart reader alone over bodies in memory, against a plain BYOB
 * read of the same bodies: the parser's own cost per byte, with curl's
 * boundary and with a short one (the delimiter search skips by its length).
 */
export async function parserRow(image: Uint8Array): Promise<Row> {
  const gbps = async (
    parse: (body: Uint8Array) => Promise<void>,
    body: Uint8Array,
  ) => {
    let best = Infinity;
    for (let r = 0; r < PARSE_ROUNDS; r++) {
      const t0 = performance.now();
      for (let k = 0; k < PARSES; k++) await parse(body);
      best = Math.min(best, performance.now() - t0);
    }
    return (PARSES * body.length) / 1e9 / (best / 1000);
  };
  const sink = { write: () => Promise.resolve() };
  const limit = { maxBody: Infinity, tooBig: () => new Error("too big") };
  const parser = (boundary: string) => (body: Uint8Array) =>
    readMultipart(byteStream(body), boundary, sink, limit);
  const plain = async (body: Uint8Array) => {
    const reader = byteStream(body).getReader({ mode: "byob" });
    let buffer = new Uint8Array(64 * 1024);
    for (;;) {
      const { done, value } = await reader.read(buffer);
      if (done || !value) break;
      buffer = new Uint8Array(value.buffer as ArrayBuffer);
    }
  };
  // Random bytes, as a compressed picture's are (zeros would flatter no one).
  const noisy = new Uint8Array(image.length);
  for (let i = 0; i < noisy.length; i += 65_536) {
    crypto.getRandomValues(noisy.subarray(i, i + 65_536));
  }
  const curl = await gbps(parser(BOUNDARY), multipartOf(noisy));
  const short = await gbps(
    parser(SHORT_BOUNDARY),
    multipartOf(noisy, SHORT_BOUNDARY),
  );
  const read = await gbps(plain, multipartOf(noisy));
  return {
    measure: `multipart reader alone: a ${
      image.length / 1e6
    } MB body of random bytes from memory, in 64 KiB reads`,
    figure: `${fmt(curl)} GB/s with curl's ${BOUNDARY.length}-character ` +
      `boundary; ${
        fmt(short)
      } GB/s with a ${SHORT_BOUNDARY.length}-character one`,
    baseline: `the same reads alone ${fmt(read)} GB/s`,
    goal: "-",
    runs: `the fastest of ${PARSE_ROUNDS} rounds of ${PARSES} parses`,
  };
}

/** Small uploads for the fixed cost, sent {@link CONCURRENT} at a time. */
const SMALL_UPLOADS = 400;
/** Threads by the name Deno gives them, as the fixed-cost row names them. */
const THREADS: Record<string, string> = {
  main: "JavaScript thread",
  "sw-0": "KV's SQLite thread",
  "tokio-runtime-w": "blocking pool (file system)",
  "V8 DefaultWorke": "V8's GC and compiler threads",
};

/**
 * What an upload costs whatever its size: the server's CPU time per upload
 * of the small fixture PNG, by thread, against the bare server's. A 5 MB
 * upload pays this besides its bytes; the bytes cost both servers the same
 * reads and writes.
 */
async function fixedCostRow(
  ctx: BenchContext,
  servers: {
    ours: { url: string; pid: number };
    bare: { url: string; pid: number };
  },
): Promise<Row> {
  const perUpload = async (server: { url: string; pid: number }) => {
    const before = await threadCpu(server.pid);
    for (let sent = 0; sent < SMALL_UPLOADS; sent += CONCURRENT) {
      const statuses = await Promise.all(
        Array.from(
          { length: CONCURRENT },
          () =>
            post(server.url, ctx.smallImage, { "content-type": "image/png" }),
        ),
      );
      if (statuses.some((s) => s !== ACCEPTED)) {
        throw new Error(`small uploads refused: ${statuses.join(" ")}`);
      }
    }
    const after = await threadCpu(server.pid);
    const by = new Map<string, number>();
    for (const [name, ms] of after) {
      const spent = (ms - (before.get(name) ?? 0)) / SMALL_UPLOADS;
      if (spent > 0) by.set(name, spent);
    }
    return by;
  };
  const total = (by: Map<string, number>) =>
    [...by.values()].reduce((a, b) => a + b, 0);
  const describe = (by: Map<string, number>) =>
    [...by].sort((a, b) => b[1] - a[1]).map(([name, ms]) =>
      `${THREADS[name] ?? name} ${fmt(ms, 2)}`
    ).join(", ");
  const ours = await perUpload(servers.ours);
  const bare = await perUpload(servers.bare);
  return {
    measure: `an upload's fixed cost: server CPU time per upload of the ` +
      `${ctx.smallImage.length} B fixture PNG, ${SMALL_UPLOADS} uploads ` +
      `${CONCURRENT} at a time`,
    figure: `${fmt(total(ours), 2)} ms (${describe(ours)})`,
    baseline: `bare Deno.serve ${fmt(total(bare), 2)} ms (${describe(bare)})`,
    goal: "-",
    runs: ONE_RUN,
  };
}

export async function ingest(ctx: BenchContext): Promise<Row[]> {
  // A real PNG padded to size: the bytes after its end are never read as
  // image, because the probe stops at IEND.
  const image = new Uint8Array(UPLOAD_BYTES);
  image.set(ctx.smallImage);
  const multipart = multipartOf(image);

  // RSS growth is counted from each server's idle RSS before its first upload.
  const idle = new Map<number, number>();
  const measure = async (
    url: string,
    pid: number,
    body: Uint8Array,
    headers: HeadersInit,
  ): Promise<Run> => {
    const tree = () => rss(pid, true);
    if (!idle.has(pid)) idle.set(pid, await tree());
    const cpu0 = await cpuOf(pid);
    const t0 = performance.now();
    const sending = Promise.all(
      Array.from({ length: CONCURRENT }, () => post(url, body, headers)),
    );
    const top = await peak(tree, sending, SAMPLE_MS);
    const statuses = await sending;
    const seconds = (performance.now() - t0) / 1000;
    return {
      mbps: mb(CONCURRENT * UPLOAD_BYTES) / seconds,
      growth: mb(top - idle.get(pid)!),
      accepted: statuses.filter((s) => s === ACCEPTED).length,
      cpuMs: (await cpuOf(pid) - cpu0) / CONCURRENT,
    };
  };
  await using bare = await startBare(ctx.dir, "/dev/null");
  await using server = await startServer({ ...ENV, ...LIMITS_HIGH });
  await using limited = await startServer(LIMITS_DEFAULT);
  const api = `${server.url}/api/jobs`, pid = server.process.pid;
  // Every run writes CONCURRENT × UPLOAD_BYTES to disk: flush the page
  // cache's dirty pages before each, so that no run pays for the previous
  // one's writeback.
  const runs = await pairedRuns(ROUNDS, {
    bare: () => measure(bare.url, bare.pid, image, {}),
    raw: () => measure(api, pid, image, { "content-type": "image/png" }),
    multipart: () =>
      measure(api, pid, multipart, {
        "content-type": `multipart/form-data; boundary=${BOUNDARY}`,
      }),
  }, () => new Deno.Command("sync").output());
  // On their own, so that each pair is two runs back to back in alternating
  // order: as a fourth kind above, the limited runs always followed the
  // multipart ones and paid for them (0.86× with the very same limits).
  const raw = { "content-type": "image/png" };
  const limitRuns = await pairedRuns(ROUNDS, {
    high: () => measure(api, pid, image, raw),
    defaults: () =>
      measure(`${limited.url}/api/jobs`, limited.process.pid, image, raw),
  }, () => new Deno.Command("sync").output());
  const worstGrowth = (rs: Run[]) => Math.max(...rs.map((r) => r.growth));
  const mbps = (rs: Run[]) => rs.map((r) => r.mbps);
  const bareGrowth = worstGrowth(runs.bare);
  const accepted = (rs: Run[]) => {
    const fewest = Math.min(...rs.map((r) => r.accepted));
    return fewest === CONCURRENT
      ? `${CONCURRENT}/${CONCURRENT} accepted in every run`
      : `as few as ${fewest}/${CONCURRENT} accepted`;
  };
  const limits = medianPair(
    mbps(limitRuns.defaults),
    mbps(limitRuns.high),
  );
  const limitsRow: Row = {
    measure:
      `ingest with the per-client limits at their defaults: ${CONCURRENT} ` +
      `concurrent ${
        UPLOAD_BYTES / 1e6
      } MB raw uploads, one client address each`,
    figure: `${fmt(limits.ours)} MB/s; peak +${
      fmt(worstGrowth(limitRuns.defaults))
    } MB RSS; ${accepted(limitRuns.defaults)}`,
    baseline: `limits set too high to matter ${fmt(limits.base)} MB/s`,
    goal: `≥ ${GOAL_LIMITS_RATIO}× (${fmt(limits.ratio, 2)}×)`,
    runs: `MB/s: ${medianPairRuns(limits)}`,
  };
  return [
    ...(["raw", "multipart"] as const).map((kind) => {
      const pair = medianPair(mbps(runs[kind]), mbps(runs.bare));
      const fewest = Math.min(...runs[kind].map((r) => r.accepted));
      return {
        measure: `ingest: ${CONCURRENT} concurrent ${
          UPLOAD_BYTES / 1e6
        } MB uploads (${
          kind === "raw" ? "raw body" : "multipart, as curl -F"
        })`,
        figure: `${fmt(pair.ours)} MB/s; server CPU ${
          fmt(median(runs[kind].map((r) => r.cpuMs)))
        } ms per upload (median); peak +${
          fmt(worstGrowth(runs[kind]))
        } MB process-tree RSS (largest of all runs); ${
          fewest === CONCURRENT
            ? `${CONCURRENT}/${CONCURRENT} accepted in every run`
            : `as few as ${fewest}/${CONCURRENT} accepted`
        }`,
        baseline: `bare Deno.serve ${fmt(pair.base)} MB/s; CPU ${
          fmt(median(runs.bare.map((r) => r.cpuMs)))
        } ms per upload; peak +${fmt(bareGrowth)} MB RSS (largest of all runs)`,
        goal: `≥ ${GOAL_RATIO}× (${
          fmt(pair.ratio, 2)
        }×), ≤ ${GOAL_GROWTH_MB} MB`,
        runs: `MB/s: ${medianPairRuns(pair)}`,
      };
    }),
    limitsRow,
    await fixedCostRow(ctx, {
      ours: { url: api, pid },
      bare: { url: bare.url, pid: bare.pid },
    }),
    await parserRow(image),
  ];
}
