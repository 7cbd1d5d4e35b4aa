/**
 * Bench section "cog": what the Cog adapter adds to each job over the
 * prediction's own run (the PUT with the image, the webhooks, taking the
 * video from a `data:` URL or fetching it), with a fake Cog server whose
 * prediction takes a fixed time. The baseline is that time, as the fake
 * measured it in the same run.
 */
import { join } from "node:path";
import { cogHarness } from "../_cog.ts";
import type { FakeOutput } from "../fake_cog.ts";
import { type BenchContext, fmt, quantile, type Row } from "./_util.ts";

/** A fixed prediction length; the overhead does not grow with it. */
const PREDICTION_MS = 2_000;
const RUNS = 5;
/** A generous image-to-video output (SVD's 14 frames are 1-2 MB). */
const VIDEO_BYTES = 8 * 1024 * 1024;
/** The goal: 2 % of a 30 s run. */
const GOAL_MS = 600;
/** `crypto.getRandomValues` fills at most this many bytes per call. */
const RANDOM_MAX = 65_536;

export async function cog(ctx: BenchContext): Promise<Row[]> {
  const video = new Uint8Array(VIDEO_BYTES);
  for (let i = 0; i < video.length; i += RANDOM_MAX) {
    crypto.getRandomValues(video.subarray(i, i + RANDOM_MAX));
  }
  const image = join(ctx.dir, "cog-input.png");
  await Deno.writeFile(image, await ctx.largeImage());
  const rows: Row[] = [];
  for (const output of ["data", "http"] as const satisfies FakeOutput[]) {
    await using h = await cogHarness(1, {
      durationMs: PREDICTION_MS,
      output,
      video,
    });
    const [fake] = h.fakes;
    const adapter = h.adapter();
    const extra: number[] = [];
    const own: number[] = [];
    /** Sending the PUT until Cog has it; the prediction's end until the video is ours. */
    const put: number[] = [];
    const after: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const run = { ...h.run(), input: image };
      const t0 = performance.now();
      await adapter.run(adapter.slots[0], run);
      const t1 = performance.now();
      const times = fake.times.get(run.job.id)!;
      own.push(times.end! - times.put);
      extra.push(t1 - t0 - (times.end! - times.put));
      put.push(times.put - t0);
      after.push(t1 - times.end!);
      await Deno.remove(run.output);
    }
    const median = quantile(extra, 0.5);
    rows.push({
      measure: `Cog adapter's time per job over the prediction's own: ${
        VIDEO_BYTES / 1024 / 1024
      } MB video as ${output === "data" ? "a data: URL" : "an http: URL"}, ${
        fmt((await Deno.stat(image)).size / 1024 / 1024)
      } MB image`,
      figure: `+${fmt(median, 0)} ms (max +${fmt(Math.max(...extra), 0)}; PUT ${
        fmt(quantile(put, 0.5), 0)
      } ms, end to video ${fmt(quantile(after, 0.5), 0)} ms)`,
      baseline: `prediction ${fmt(quantile(own, 0.5), 0)} ms`,
      goal: `≤ ${GOAL_MS} ms (2 % of 30 s)`,
      runs: `median of ${RUNS}`,
    });
  }
  return rows;
}
