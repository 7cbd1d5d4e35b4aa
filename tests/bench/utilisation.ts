/**
 * Bench section "utilisation": a burst of small jobs queued at once; the
 * model should be busy from the first start to the last finish.
 */
import { type ApiJobLike, Client, startServer } from "../_server.ts";
import { type BenchContext, fmt, jobId, ONE_RUN, type Row } from "./_util.ts";

const MODEL_MS = 1000;
const JOBS = 20;
/** High enough that the burst is never rate limited. */
const UPLOADS_PER_MINUTE = 1000;

export async function utilisation(ctx: BenchContext): Promise<Row[]> {
  await using server = await startServer({
    MODEL_DURATION_MS: String(MODEL_MS),
    UPLOADS_PER_MINUTE: String(UPLOADS_PER_MINUTE),
  });
  const client = new Client(server.url);
  const ids: string[] = [];
  for (let i = 0; i < JOBS; i++) {
    ids.push(jobId((await client.upload(ctx.smallImage)).body));
  }
  await client.events(ids.at(-1)!, (j) => j.status === "done");
  const jobs =
    (await client.json<{ jobs: ApiJobLike[] }>("/api/jobs")).body.jobs;
  const start = Math.min(...jobs.map((j) => Date.parse(j.startedAt!)));
  const end = Math.max(...jobs.map((j) => Date.parse(j.finishedAt!)));
  const busy = JOBS * MODEL_MS;
  return [{
    measure: `model utilisation: ${JOBS} jobs at ${MODEL_MS} ms`,
    figure: `makespan ${fmt((end - start) / 1000, 2)} s`,
    baseline: `${busy / 1000} s`,
    goal: `≥ 99 % (${fmt(100 * busy / (end - start))} %)`,
    runs: ONE_RUN,
  }];
}
