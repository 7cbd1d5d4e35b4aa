/**
 * Bench section "pipeline": two 1080p jobs through the real server: its memory
 * idle, during an encode (alone and with its encoder child) and after; how
 * long a job takes against the model time; the gap between queued jobs; how
 * often a listener hears progress.
 */
import { TIMINGS } from "../../service.ts";
import { type ApiJobLike, Client, startServer } from "../_server.ts";
import {
  type BenchContext,
  fmt,
  jobId,
  mb,
  ONE_RUN,
  peak,
  type Row,
  rss,
} from "./_util.ts";

/** Long enough that an encode is sampled many times. */
const MODEL_MS = 3000;
/** RSS sampling interval during an encode. */
const SAMPLE_MS = 10;
/** How often the model writes progress: the most a listener can hear. */
const MODEL_TICKS_PER_SECOND = 1000 / TIMINGS.tickMs;

export async function pipeline(ctx: BenchContext): Promise<Row[]> {
  const image = await ctx.largeImage();
  await using server = await startServer({
    MODEL_DURATION_MS: String(MODEL_MS),
  });
  const pid = server.process.pid;
  const client = new Client(server.url);
  await client.json("/healthz");
  const idle = await rss(pid);
  const first = jobId((await client.upload(image)).body);
  const second = jobId((await client.upload(image)).body);
  const done = (j: ApiJobLike) => j.status === "done";
  const serverPeak = peak(
    () => rss(pid),
    client.events(first, done),
    SAMPLE_MS,
  );
  const treePeak = peak(
    () => rss(pid, true),
    client.events(first, done),
    SAMPLE_MS,
  );
  const rows: Row[] = [{
    measure: "server RSS, idle",
    figure: `${fmt(mb(idle))} MB`,
    baseline: "-",
    goal: "-",
    runs: ONE_RUN,
  }, {
    measure: "server RSS during a 1080p encode (server process alone)",
    figure: `${fmt(mb(await serverPeak))} MB`,
    baseline: `idle ${fmt(mb(idle))} MB`,
    goal: "flat",
    runs: ONE_RUN,
  }, {
    measure: "server + encoder child RSS, peak during a 1080p encode",
    figure: `${fmt(mb(await treePeak))} MB`,
    baseline: `idle ${fmt(mb(idle))} MB`,
    goal: "given back after",
    runs: ONE_RUN,
  }];
  const { events } = await client.events(second, done);
  const running = events.filter((e) => e.job.status === "processing");
  const span = (running.at(-1)!.at - running[0].at) / 1000;
  const jobs =
    (await client.json<{ jobs: ApiJobLike[] }>("/api/jobs")).body.jobs;
  // Newest first: the second upload, then the first.
  const [b, a] = jobs;
  const took = (j: ApiJobLike) =>
    Date.parse(j.finishedAt!) - Date.parse(j.startedAt!);
  const after = await rss(pid, true);
  rows.push({
    measure: `job duration at MODEL_DURATION_MS=${MODEL_MS} (1080p image)`,
    figure: `${took(a)} ms, ${took(b)} ms`,
    baseline: `${MODEL_MS} ms`,
    goal: "= model time",
    runs: `${ONE_RUN} (two jobs)`,
  }, {
    measure: "idle gap between two queued jobs",
    figure: `${Date.parse(b.startedAt!) - Date.parse(a.finishedAt!)} ms`,
    baseline: "0 ms",
    goal: "≈ 0",
    runs: ONE_RUN,
  }, {
    measure: "progress events per second (SSE, one client)",
    figure: fmt((running.length - 1) / span),
    baseline: `model ticks ${MODEL_TICKS_PER_SECOND}/s`,
    goal: "≥ 2",
    runs: ONE_RUN,
  }, {
    measure: "server RSS after the encodes (children gone)",
    figure: `${fmt(mb(after))} MB`,
    baseline: `idle ${fmt(mb(idle))} MB`,
    goal: "-",
    runs: ONE_RUN,
  });
  return rows;
}
