/**
 * Bench section "fair": what the fair order costs as the line grows (issue
 * #10). At the queue layer, on a KV file, so that HTTP noise does not hide
 * it: an upload (a newcomer's `createJob`) and a position update (a
 * process's view catching up with one change and answering one position)
 * with 10,000 jobs waiting from 1,000 sessions over 200 addresses, against
 * the same with 10 waiting, in paired runs of the same process.
 */
import { cancelJob, createJob, type JobRecord } from "../../queue/jobs.ts";
import { QueueView } from "../../queue/view.ts";
import { queuedJob } from "../_fakes.ts";
import {
  type BenchContext,
  fmt,
  medianPair,
  medianPairRuns,
  pairedRuns,
  quantile,
  type Row,
} from "./_util.ts";

const LONG = 10_000;
const SESSIONS = 1_000;
const ADDRESSES = 200;
const SHORT = 10;
/** Operations timed per run; a run's figure is their median. */
const SAMPLES = 200;
const ROUNDS = 5;
const LIMITS = {
  maxQueue: 2 * LONG,
  maxWaitingPerSession: LONG,
  maxWaitingPerClient: LONG,
};
const HOUR = 3_600_000;

const address = (n: number) => `10.${(n >> 8) & 255}.${n & 255}.1`;

interface Line {
  kv: Deno.Kv;
  view: QueueView;
  /** A job far back in line, whose position is asked. */
  watched: JobRecord;
  t: number;
}

async function line(dir: string, jobs: number): Promise<Line> {
  const kv = await Deno.openKv(`${dir}/fair-${jobs}.sqlite3`);
  let t = 1_000;
  let watched!: JobRecord;
  for (let i = 0; i < jobs; i++) {
    const session = i % SESSIONS;
    const job = queuedJob(t++, `s${session}`, address(session % ADDRESSES));
    await createJob(kv, job, LIMITS);
    watched = job;
  }
  const view = new QueueView(kv);
  await view.state();
  return { kv, view, watched, t };
}

/** A newcomer (new address, new session) joins; the line is put back after. */
async function uploads(l: Line): Promise<number> {
  const times = [];
  for (let i = 0; i < SAMPLES; i++) {
    const job = queuedJob(l.t++, `new${l.t}`, address(ADDRESSES + 1 + i));
    const start = performance.now();
    await createJob(l.kv, job, LIMITS);
    times.push(performance.now() - start);
    await cancelJob(l.kv, job.id, l.t, HOUR);
  }
  return quantile(times, 0.5);
}

/** After a newcomer joins (ahead of `watched`), the view gives `watched`'s new position. */
async function positions(l: Line): Promise<number> {
  const times = [];
  for (let i = 0; i < SAMPLES; i++) {
    const job = queuedJob(l.t++, `new${l.t}`, address(ADDRESSES + 1 + i));
    await createJob(l.kv, job, LIMITS);
    const start = performance.now();
    const state = await l.view.state();
    if (!state.positions.get(l.watched.id)) throw new Error("not in line");
    times.push(performance.now() - start);
    await cancelJob(l.kv, job.id, l.t, HOUR);
  }
  return quantile(times, 0.5);
}

export async function fair(ctx: BenchContext): Promise<Row[]> {
  const fillStart = performance.now();
  const long = await line(ctx.dir, LONG);
  const fillMs = performance.now() - fillStart;
  const short = await line(ctx.dir, SHORT);
  try {
    const up = await pairedRuns(ROUNDS, {
      long: () => uploads(long),
      short: () => uploads(short),
    });
    const pos = await pairedRuns(ROUNDS, {
      long: () => positions(long),
      short: () => positions(short),
    });
    // What every change cost each process before: listing the whole line.
    const relist = async (l: Line) => {
      const start = performance.now();
      await new QueueView(l.kv).state();
      return performance.now() - start;
    };
    const full = await pairedRuns(ROUNDS, {
      long: () => relist(long),
      short: () => relist(short),
    });
    const u = medianPair(up.long, up.short);
    const f = medianPair(full.long, full.short);
    const p = medianPair(pos.long, pos.short);
    return [
      {
        measure:
          `an upload (createJob, a newcomer) with ${LONG} waiting from ${SESSIONS} sessions over ${ADDRESSES} addresses`,
        figure: `${fmt(u.ours, 2)} ms (median of ${SAMPLES}); ${
          fmt(u.ratio, 2)
        }× the baseline`,
        baseline: `${fmt(u.base, 2)} ms with ${SHORT} waiting`,
        goal: "≤ 2× the baseline",
        runs: medianPairRuns(u),
      },
      {
        measure:
          `a position update (one change applied, one position read) with ${LONG} waiting`,
        figure: `${fmt(p.ours, 3)} ms (median of ${SAMPLES}); ${
          fmt(p.ratio, 2)
        }× the baseline`,
        baseline: `${fmt(p.base, 3)} ms with ${SHORT} waiting`,
        goal: "≤ 2× the baseline",
        runs: medianPairRuns(p),
      },
      {
        measure:
          `listing the whole line with ${LONG} waiting (what every change cost each process before the log; now only at start or when far behind)`,
        figure: `${fmt(f.ours, 1)} ms`,
        baseline: `${fmt(f.base, 2)} ms with ${SHORT} waiting`,
        goal: "paid once per process, not per change",
        runs: medianPairRuns(f),
      },
      {
        measure: `filling the line with ${LONG} jobs (for scale)`,
        figure: `${fmt(fillMs / LONG, 2)} ms per job`,
        baseline: "—",
        goal: "—",
        runs: "1",
      },
    ];
  } finally {
    long.kv.close();
    short.kv.close();
  }
}
