/**
 * Bench section "video": the finished clip fetched whole with Range over and
 * over, several at once, against a bare server that streams the same file.
 */
import { Client, startServer } from "../_server.ts";
import {
  type BenchContext,
  fmt,
  jobId,
  mb,
  medianPair,
  medianPairRuns,
  pairedRuns,
  type Row,
  startBare,
} from "./_util.ts";

/** Short: only the finished clip matters here. */
const MODEL_MS = 300;
/** Fetches per run. */
const FETCHES = 1000;
/** Fetches in flight at once, as a few players seeking would. */
const CONCURRENT = 8;
/** Odd, so that the median ratio is one pair's (see medianPair). */
const ROUNDS = 9;
const GOAL_RATIO = 0.8;
const KB = 1024;

export async function video(ctx: BenchContext): Promise<Row[]> {
  const image = await ctx.largeImage();
  await using server = await startServer({
    MODEL_DURATION_MS: String(MODEL_MS),
  });
  const client = new Client(server.url);
  const id = jobId((await client.upload(image)).body);
  const { events } = await client.events(id, (j) => j.status === "done");
  const url = server.url + events.at(-1)!.job.video!.url;
  const file = `${server.dataDir}/videos/${id}.mp4`;
  const size = (await Deno.stat(file)).size;
  /** Fetches `target` FETCHES times, CONCURRENT at once; MB/s. */
  const run = async (target: string, headers: HeadersInit) => {
    const t0 = performance.now();
    let left = FETCHES;
    await Promise.all(Array.from({ length: CONCURRENT }, async () => {
      while (left-- > 0) {
        const res = await fetch(target, { headers });
        await res.arrayBuffer();
      }
    }));
    return mb(FETCHES * size) / ((performance.now() - t0) / 1000);
  };
  // What a <video> element sends.
  const media = {
    cookie: client.cookie,
    range: "bytes=0-",
    "sec-fetch-dest": "video",
  };
  await using bare = await startBare(ctx.dir, file);
  const runs = await pairedRuns(ROUNDS, {
    bare: () => run(bare.url, {}),
    ours: () => run(url, media),
  });
  const pair = medianPair(runs.ours, runs.bare);
  return [{
    measure: `video: Range streaming of a ${
      fmt(size / KB, 0)
    } KB clip, ${FETCHES}× with ${CONCURRENT} at once`,
    figure: `${fmt(pair.ours)} MB/s`,
    baseline: `bare file server ${fmt(pair.base)} MB/s`,
    goal: `≥ ${GOAL_RATIO}× (${fmt(pair.ratio, 2)}×)`,
    runs: medianPairRuns(pair),
  }];
}
