/**
 * Bench section "sse": many listeners on one running job: the server's
 * extra memory, and how late each progress event reaches a listener after
 * the worker wrote it.
 */
import { type ApiJobLike, Client, startServer } from "../_server.ts";
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
} from "./_util.ts";

/** Listeners by default; `SSE_LISTENERS=n` changes it. */
const LISTENERS = 1000;
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
const GOAL_GROWTH_MB = 100;
const GOAL_P99_MS = 100;

export async function sse(ctx: BenchContext): Promise<Row[]> {
  const listeners = Number(Deno.env.get("SSE_LISTENERS") ?? LISTENERS);
  await using server = await startServer({
    MODEL_DURATION_MS: String(MODEL_MS),
    UPLOADS_PER_MINUTE: String(UPLOADS_PER_MINUTE),
    // Every listener comes from this one address: let them all in.
    MAX_STREAMS_PER_CLIENT: String(listeners),
  });
  const client = new Client(server.url);
  // The first job runs while the listeners connect; the second is listened to
  // from its first moment.
  const blocker = jobId((await client.upload(ctx.smallImage)).body);
  const id = jobId((await client.upload(ctx.smallImage)).body);
  await client.json("/healthz");
  const before = await rss(server.process.pid);
  const latencies: number[] = [];
  // Raw sockets instead of fetch: a fetch client with this many streams
  // costs more CPU than the server does, and its queue would be timed, not ours.
  const { hostname, port } = new URL(server.url);
  const request = new TextEncoder().encode(
    `GET /api/jobs/${id}/events HTTP/1.1\r\nHost: ${hostname}:${port}\r\n` +
      `Cookie: ${client.cookie}\r\nAccept: text/event-stream\r\n\r\n`,
  );
  const conns: Deno.Conn[] = [];
  let connected!: () => void;
  const allConnected = new Promise<void>((r) => (connected = r));
  const streams = Array.from({ length: listeners }, async (_, n) => {
    const timed = n % TIMED_EVERY === 0;
    const conn = await Deno.connect({ hostname, port: Number(port) });
    conns.push(conn);
    if (conns.length === listeners) connected();
    await conn.write(request);
    const buf = new Uint8Array(READ_BUFFER_BYTES);
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
          // The worker wrote this progress when elapsed / model time first
          // reached it (progressAt floors it to 0.1 %, within MODEL_MS / 1000).
          const writtenAt = Date.parse(job.startedAt!) +
            (job.progress / PERCENT) * MODEL_MS;
          latencies.push(now - writtenAt);
        }
      }
    } catch { /* closed */ }
  });
  await allConnected;
  await client.events(blocker, (j) => j.status === "done");
  const top = await peak(
    () => rss(server.process.pid),
    client.events(id, (j) => j.status === "done"),
    SAMPLE_MS,
  );
  for (const c of conns) c.close();
  await Promise.all(streams);
  return [{
    measure: `SSE: ${listeners} listeners on a running job`,
    figure: `+${fmt(mb(top - before))} MB RSS, latency p50 ${
      fmt(quantile(latencies, 0.5))
    } ms, p99 ${
      fmt(quantile(latencies, 0.99))
    } ms (${latencies.length} events)`,
    baseline: `idle ${fmt(mb(before))} MB`,
    goal: `≤ ${GOAL_GROWTH_MB} MB, p99 ≤ ${GOAL_P99_MS} ms`,
    runs: ONE_RUN,
  }];
}
