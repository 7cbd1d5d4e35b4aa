/**
 * Bench section "sse": many listeners on one running job: the server's
 * extra memory (and its cost per listener), and how late each progress
 * event reaches a listener after the worker wrote it; at 10,000 listeners
 * also a bare `Deno.serve` holding as many streams, the floor. The bench
 * process and the servers need a file descriptor per stream (`ulimit -n`
 * above 10,000).
 */
import { type ApiJobLike, Client, startServer } from "../_server.ts";
import { SSE_INTERVAL_MS } from "./_bare_sse.ts";
import {
  type BenchContext,
  fmt,
  jobId,
  mb,
  ONE_RUN,
  peak,
  quantile,
  type Row,
  rss,
  startBare,
} from "./_util.ts";

/** Listeners of the first row; `SSE_LISTENERS=n` changes it. */
const LISTENERS = 1000;
/** Listeners of the second row (issue 14). */
const MANY_LISTENERS = 10_000;
const MODEL_MS = 4000;
/** One listener in this many parses and times its events; the rest only read. */
const TIMED_EVERY = 10;
const READ_BUFFER_BYTES = 16 * 1024;
/** RSS sampling interval while the job runs. */
const SAMPLE_MS = 50;
/** High enough that the two uploads are never rate limited. */
const UPLOADS_PER_MINUTE = 1000;
/** `progress` is a percentage (API.md). */
const PERCENT = 100;
const GOALS = {
  [LISTENERS]: { growthMb: 100, p99Ms: 100 },
  [MANY_LISTENERS]: { growthMb: 600, p99Ms: 250 },
} as Record<number, { growthMb: number; p99Ms: number }>;
const KB = 1024;

interface Listened {
  /** Peak RSS above idle, in bytes. */
  growth: number;
  /** RSS above idle with every stream open, before the events start. */
  held: number;
  idle: number;
  latencies: number[];
}

/**
 * Opens `count` raw connections to `url` that send `request` and read what
 * comes; one in {@link TIMED_EVERY} passes each event's `data` JSON to
 * `latency`, which returns how late it came (ms) or null. Resolves once all
 * are connected, with a `close` that ends them.
 */
async function listen(
  url: string,
  request: string,
  count: number,
  latency: (data: string, now: number) => number | null,
  latencies: number[],
) {
  // Raw sockets instead of fetch: a fetch client with this many streams
  // costs more CPU than the server does, and its queue would be timed, not ours.
  const { hostname, port } = new URL(url);
  const bytes = new TextEncoder().encode(request);
  const conns: Deno.Conn[] = [];
  let connected!: () => void;
  const allConnected = new Promise<void>((r) => (connected = r));
  let answered = 0, allAnswered!: () => void;
  const answering = new Promise<void>((r) => (allAnswered = r));
  const streams = Array.from({ length: count }, async (_, n) => {
    const timed = n % TIMED_EVERY === 0;
    const conn = await Deno.connect({ hostname, port: Number(port) })
      .catch((e) => {
        throw new Error(
          `listener ${n} could not connect (${e}): each stream needs a file descriptor here and in the server; raise \`ulimit -n\` above ${count}`,
        );
      });
    conns.push(conn);
    if (conns.length === count) connected();
    await conn.write(bytes);
    const buf = new Uint8Array(READ_BUFFER_BYTES);
    const decoder = new TextDecoder();
    let text = "", first = true;
    try {
      for (;;) {
        const got = await conn.read(buf);
        if (got === null) return;
        if (first && ++answered === count) allAnswered();
        first = false;
        if (!timed) continue;
        const now = Date.now();
        text += decoder.decode(buf.subarray(0, got), { stream: true });
        let m;
        while ((m = /data: (\{.*?\})\n\n/.exec(text))) {
          text = text.slice(m.index + m[0].length);
          const late = latency(m[1], now);
          if (late !== null) latencies.push(late);
        }
      }
    } catch { /* closed */ }
  });
  await allConnected;
  return {
    /** Every stream has had its first bytes: the server holds them all. */
    answered: answering,
    async close() {
      for (const c of conns) c.close();
      await Promise.all(streams);
    },
  };
}

/** `listeners` event streams on one running job of the real server. */
async function ours(ctx: BenchContext, listeners: number): Promise<Listened> {
  await using server = await startServer({
    MODEL_DURATION_MS: String(MODEL_MS),
    UPLOADS_PER_MINUTE: String(UPLOADS_PER_MINUTE),
    // Every listener comes from this one address: let them all in, and the
    // bench's own two streams (the jobs' ends) besides.
    MAX_STREAMS_PER_CLIENT: String(listeners + 2),
  });
  const client = new Client(server.url);
  // The first job runs while the listeners connect; the second is listened to
  // from its first moment.
  const blocker = jobId((await client.upload(ctx.smallImage)).body);
  const id = jobId((await client.upload(ctx.smallImage)).body);
  await client.json("/healthz");
  const idle = await rss(server.process.pid);
  const latencies: number[] = [];
  const { host } = new URL(server.url);
  const open = await listen(
    server.url,
    `GET /api/jobs/${id}/events HTTP/1.1\r\nHost: ${host}\r\n` +
      `Cookie: ${client.cookie}\r\nAccept: text/event-stream\r\n\r\n`,
    listeners,
    (data, now) => {
      const job = JSON.parse(data) as ApiJobLike;
      if (job.status !== "processing" || job.progress === 0) return null;
      // The worker wrote this progress when elapsed / model time first
      // reached it (progressAt floors it to 0.1 %, within MODEL_MS / 1000).
      return now - (Date.parse(job.startedAt!) +
        (job.progress / PERCENT) * MODEL_MS);
    },
    latencies,
  );
  await open.answered;
  await client.events(blocker, (j) => j.status === "done");
  const held = await rss(server.process.pid) - idle;
  const top = await peak(
    () => rss(server.process.pid),
    client.events(id, (j) => j.status === "done"),
    SAMPLE_MS,
  );
  await open.close();
  return { growth: top - idle, held, idle, latencies };
}

/**
 * The floor: a bare `Deno.serve` holding as many event streams, sending the
 * same bytes to all of them as often as ours sends progress to each stream
 * of a job with many, for as long as the job runs above.
 */
async function bare(ctx: BenchContext, listeners: number): Promise<Listened> {
  await using server = await startBare(ctx.dir, "/dev/null");
  const idle = await rss(server.pid);
  const latencies: number[] = [];
  const { host } = new URL(server.url);
  const open = await listen(
    server.url,
    `GET /sse HTTP/1.1\r\nHost: ${host}\r\nAccept: text/event-stream\r\n\r\n`,
    listeners,
    (data, now) => now - (JSON.parse(data) as { t: number }).t,
    latencies,
  );
  await open.answered; // the first event, at most 200 ms on
  const held = await rss(server.pid) - idle;
  const top = await peak(
    () => rss(server.pid),
    // A fixed span, not a wait for an event: the bare server has no job.
    new Promise((r) => setTimeout(r, MODEL_MS)),
    SAMPLE_MS,
  );
  await open.close();
  return { growth: top - idle, held, idle, latencies };
}

/**
 * Below the floor: a bare `Deno.serve` holding as many requests without
 * answering them, what Deno's HTTP server keeps per connection and request
 * before any body; the RSS above idle once it has them all.
 */
async function unanswered(ctx: BenchContext, requests: number) {
  await using server = await startBare(ctx.dir, "/dev/null");
  const idle = await rss(server.pid);
  const { host } = new URL(server.url);
  const open = await listen(
    server.url,
    `GET /hold HTTP/1.1\r\nHost: ${host}\r\n\r\n`,
    requests,
    () => null,
    [],
  );
  // Nothing is answered: ask the server how many it holds.
  while (
    Number(await (await fetch(new URL("/held", server.url))).text()) < requests
  ) await new Promise((r) => setTimeout(r, SAMPLE_MS));
  const held = await rss(server.pid) - idle;
  await open.close();
  return held;
}

const describe = (r: Listened, listeners: number) =>
  `+${fmt(mb(r.growth))} MB RSS (${
    fmt(r.growth / listeners / KB)
  } KB per listener; ${
    fmt(r.held / listeners / KB)
  } KB held before the first event), latency p50 ${
    fmt(quantile(r.latencies, 0.5))
  } ms, p99 ${
    fmt(quantile(r.latencies, 0.99))
  } ms (${r.latencies.length} events)`;

export async function sse(ctx: BenchContext): Promise<Row[]> {
  const first = Number(Deno.env.get("SSE_LISTENERS") ?? LISTENERS);
  const rows: Row[] = [];
  for (const listeners of [first, MANY_LISTENERS]) {
    const goal = GOALS[listeners];
    const r = await ours(ctx, listeners);
    const floor = listeners === MANY_LISTENERS
      ? await bare(ctx, listeners)
      : null;
    rows.push({
      measure: `SSE: ${listeners} listeners on a running job`,
      figure: describe(r, listeners),
      baseline: `idle ${fmt(mb(r.idle))} MB` +
        (floor
          ? `; bare Deno.serve, as many streams, an event every ${SSE_INTERVAL_MS} ms: ${
            describe(floor, listeners)
          }`
          : ""),
      goal: goal ? `≤ ${goal.growthMb} MB, p99 ≤ ${goal.p99Ms} ms` : "-",
      runs: floor ? "1 each" : ONE_RUN,
    });
  }
  const held = await unanswered(ctx, MANY_LISTENERS);
  rows.push({
    measure:
      `SSE floor: a bare Deno.serve holding ${MANY_LISTENERS} requests unanswered (no body, no JavaScript per request)`,
    figure: `+${fmt(mb(held))} MB RSS (${
      fmt(held / MANY_LISTENERS / KB)
    } KB per request)`,
    baseline: "-",
    goal: "-",
    runs: ONE_RUN,
  });
  return rows;
}
