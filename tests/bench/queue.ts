/**
 * Bench section "queue": what a long queue costs the server's memory. The
 * same uploads are accepted (queued) by one server and refused (415) by
 * another: the difference is what the queued jobs themselves hold.
 */
import { Client, startServer } from "../_server.ts";
import { type BenchContext, fmt, mb, ONE_RUN, type Row, rss } from "./_util.ts";

const JOBS = 1000;
/** Uploads in flight at once. */
const BATCH = 50;
const ENV = {
  MAX_QUEUE: String(2 * JOBS),
  UPLOADS_PER_MINUTE: String(100 * JOBS),
  // One session sends them all: the waiting caps would refuse most.
  MAX_WAITING_PER_SESSION: String(2 * JOBS),
  MAX_WAITING_PER_CLIENT: String(2 * JOBS),
  /** Long enough that no job finishes while the queue fills. */
  MODEL_DURATION_MS: String(10 * 60_000),
};

export async function queue(ctx: BenchContext): Promise<Row[]> {
  const junk = new TextEncoder().encode("not an image at all");
  const grow = async (body: Uint8Array) => {
    await using server = await startServer(ENV);
    const client = new Client(server.url);
    await client.json("/healthz");
    const before = await rss(server.process.pid);
    for (let i = 0; i < JOBS; i += BATCH) {
      await Promise.all(
        Array.from({ length: BATCH }, () => client.upload(body)),
      );
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
  const accepted = await grow(ctx.smallImage);
  const refused = await grow(junk);
  return [{
    measure: `${JOBS} queued jobs`,
    figure: `+${fmt(accepted.growth)} MB RSS with ${accepted.depth} queued ` +
      `(KV file ${fmt(accepted.kv, 2)} MB)`,
    baseline: `the same ${JOBS} uploads refused: +${
      fmt(refused.growth)
    } MB, ${refused.depth} queued`,
    goal: `no more than their KV records (${
      fmt(accepted.growth - refused.growth)
    } MB)`,
    runs: `${ONE_RUN} per server`,
  }];
}
