/**
 * `deno task bench [section…]`: speed and memory of the service, each figure
 * measured in the same run as its baseline. Runs the sections in order,
 * prints a markdown table and, when every section ran, writes BENCH.md.
 * Not a test: it asserts nothing.
 */
import { cog } from "./cog.ts";
import { command } from "./command.ts";
import { encoder } from "./encoder.ts";
import { fair } from "./fair.ts";
import { ingest } from "./ingest.ts";
import { pipeline } from "./pipeline.ts";
import { queue } from "./queue.ts";
import { sse } from "./sse.ts";
import { stalled } from "./stalled.ts";
import { utilisation } from "./utilisation.ts";
import { video } from "./video.ts";
import {
  type BenchContext,
  fmt,
  makeLargeImage,
  mb,
  readSmallImage,
  type Row,
  type Section,
} from "./_util.ts";

/** In the order they run and appear in BENCH.md. */
const SECTIONS: Record<string, Section> = {
  pipeline,
  encoder,
  utilisation,
  ingest,
  stalled,
  queue,
  fair,
  sse,
  video,
  cog,
  command,
};

const BENCH_MD = new URL("../../BENCH.md", import.meta.url).pathname;
const GIB = 1024 ** 3;
/** Wrong usage, as a shell's builtins report it. */
const EXIT_USAGE = 2;

const COLUMNS: [keyof Row, string][] = [
  ["measure", "measure"],
  ["figure", "figure"],
  ["baseline", "baseline (same run)"],
  ["goal", "goal"],
  ["runs", "runs"],
];

/** The table, in markdown. */
function table(rows: Row[]): string {
  return [
    `| ${COLUMNS.map(([, title]) => title).join(" | ")} |`,
    `| ${COLUMNS.map(() => "---").join(" | ")} |`,
    ...rows.map((r) => `| ${COLUMNS.map(([key]) => r[key]).join(" | ")} |`),
  ].join("\n");
}

/**
 * What BENCH.md says before the table: where, when, how busy the machine was
 * (other work on it slows both sides of every comparison, and absolute
 * figures with them), and how to read the table.
 */
function header(seconds: number, loadAtStart: number): string {
  const mem = Deno.systemMemoryInfo();
  return `Measured ${new Date().toISOString().slice(0, 10)} by ` +
    `\`deno task bench\` on ${navigator.hardwareConcurrency} cores, ` +
    `${fmt(mem.total / GIB, 0)} GiB memory, Deno ${Deno.version.deno}; ` +
    `the run took ${fmt(seconds, 0)} s. The 1-minute load average was ` +
    `${fmt(loadAtStart, 2)} at the start and ${fmt(Deno.loadavg()[0], 2)} ` +
    `at the end.\n\n` +
    `The runs column says where a row's figures come from: "1" is a single ` +
    `run. Throughput is noisy, so it is measured in paired runs (ours and ` +
    `the baseline back to back, several rounds), and the row shows the one ` +
    `pair whose ratio is the median: its two figures divide to the ratio in ` +
    `the goal column; the spread of all the pairs' ratios follows.`;
}

/** The sections named on the command line, or all of them; exits on a bad name. */
function chosen(args: string[]): string[] {
  const unknown = args.filter((a) => !(a in SECTIONS));
  if (unknown.length > 0) {
    console.error(
      `bench: no section ${unknown.map((u) => `"${u}"`).join(", ")}. ` +
        `Sections: ${Object.keys(SECTIONS).join(", ")}.\n` +
        `Usage: deno task bench [section…] (none: all, and BENCH.md is written)`,
    );
    Deno.exit(EXIT_USAGE);
  }
  return args.length > 0
    ? Object.keys(SECTIONS).filter((s) => args.includes(s))
    : Object.keys(SECTIONS);
}

if (import.meta.main) {
  const names = chosen(Deno.args);
  const dir = await Deno.makeTempDir({ prefix: "img2vid-bench-" });
  let large: Promise<Uint8Array> | undefined;
  const ctx: BenchContext = {
    dir,
    largeImage: () =>
      large ??= (async () => {
        console.error("bench: making a 1080p test image…");
        const image = await makeLargeImage(dir);
        console.error(`bench: 1080p PNG, ${fmt(mb(image.length), 2)} MB`);
        return image;
      })(),
    smallImage: await readSmallImage(),
  };
  const t0 = performance.now();
  const [loadAtStart] = Deno.loadavg();
  const rows: Row[] = [];
  try {
    for (const name of names) {
      console.error(`bench: ${name}`);
      for (const r of await SECTIONS[name](ctx)) {
        console.error(
          `  ${r.measure}: ${r.figure} (${r.baseline}; goal ${r.goal}; runs ${r.runs})`,
        );
        rows.push(r);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const seconds = (performance.now() - t0) / 1000;
  console.log(table(rows));
  if (names.length === Object.keys(SECTIONS).length) {
    await Deno.writeTextFile(
      BENCH_MD,
      `# Benchmarks\n\n${header(seconds, loadAtStart)}\n\n${table(rows)}\n`,
    );
    // Written as `deno fmt` would, so that CI's fmt check passes on it.
    await new Deno.Command(Deno.execPath(), {
      args: ["fmt", "--quiet", BENCH_MD],
    }).output();
  }
}
