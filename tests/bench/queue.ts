/**
 * Bench section "queue": what a long queue costs the server's memory. The
 * same uploads are accepted (queued) by one server and refused (415) by
 * another: the difference is what the queued jobs themselves hold. And what
 * the sweep's recount of `DATA_MAX_BYTES` costs once many files are kept.
 */
import { DiskStore } from "../../media/store.ts";
import { createJob } from "../../queue/jobs.ts";
import { sweepOrphans } from "../../queue/retention.ts";
import { queuedJob } from "../_fakes.ts";
import { Client, startServer } from "../_server.ts";
import { putImage } from "../_stores.ts";
import {
  type BenchContext,
  fmt,
  mb,
  medianPair,
  medianPairRuns,
  ONE_RUN,
  pairedRuns,
  type Row,
  rss,
} from "./_util.ts";

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
  return [await recount(ctx), {
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

/** Files kept when the sweep recounts them (one image per waiting job). */
const KEPT_FILES = 10_000;
/** Odd, so that the median ratio is one pair's (see medianPair). */
const RECOUNT_ROUNDS = 5;
/** The recount's KV reads may cost up to the walk itself again. */
const RECOUNT_GOAL_RATIO = 2;

/**
 * The orphan sweep with its recount over {@link KEPT_FILES} kept images (a
 * KV read per file, then one write), against walking the same store alone.
 */
async function recount(ctx: BenchContext): Promise<Row> {
  using kv = await Deno.openKv(":memory:");
  const store = await new DiskStore(`${ctx.dir}/recount`).init();
  const image = new Uint8Array(1024);
  for (let i = 0; i < KEPT_FILES; i++) {
    const job = queuedJob(1000 + i);
    job.image.bytes = image.length;
    await createJob(kv, job, 2 * KEPT_FILES);
    await putImage(store, job.id, image);
  }
  const timed = (run: () => Promise<unknown>) => async () => {
    const start = performance.now();
    await run();
    return performance.now() - start;
  };
  const runs = await pairedRuns(RECOUNT_ROUNDS, {
    sweep: timed(() => sweepOrphans(kv, store, Date.now(), 60_000)),
    walk: timed(() => Array.fromAsync(store.entries())),
  });
  const pair = medianPair(runs.sweep, runs.walk);
  return {
    measure: `sweep + recount of ${KEPT_FILES} kept files`,
    figure: `${fmt(pair.ours)} ms (${fmt(pair.ratio, 2)}× the walk)`,
    baseline: `walking the same store alone: ${fmt(pair.base)} ms`,
    goal: `≤ ${RECOUNT_GOAL_RATIO}× the walk`,
    runs: medianPairRuns(pair),
  };
}
