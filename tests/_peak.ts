/**
 * The peak resident memory of a program, measured exactly by the kernel: a
 * wrapper process runs it as its only child and asks `getrusage` for its
 * children's largest `ru_maxrss` once it has been reaped. No sampling, so no
 * peak is missed however short.
 *
 * Usage (what {@link peakOf} runs): deno run -A tests/_peak.ts <program> <args…>
 * (its stdin passed on) prints `{"code", "peakBytes", "ms"}` on stdout; the program's stderr passes
 * through.
 */

export interface Peak {
  /** The program's exit code. */
  code: number;
  /** Its largest resident set, in bytes. */
  peakBytes: number;
  /** Wall time from spawn to exit, in ms. */
  ms: number;
}

const SELF = new URL(import.meta.url).pathname;
const RUSAGE_CHILDREN = -1;
/** `struct rusage`: two timevals (4 × 8 bytes), then `long ru_maxrss` in KiB. */
const MAXRSS_INDEX = 4;
const RUSAGE_LONGS = 18;
const KIB = 1024;

/**
 * Runs `program` with `args` (and `input` on its stdin) in a fresh wrapper
 * and returns its peak.
 */
export async function peakOf(
  program: string,
  args: string[],
  input = "",
): Promise<Peak> {
  const wrapper = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SELF, program, ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const writer = wrapper.stdin.getWriter();
  await writer.write(new TextEncoder().encode(input));
  await writer.close();
  const out = await wrapper.output();
  if (!out.success) throw new Error(`the peak wrapper failed (${out.code})`);
  return JSON.parse(new TextDecoder().decode(out.stdout)) as Peak;
}

async function main(program: string, args: string[]): Promise<Peak> {
  const t0 = performance.now();
  const { code } = await new Deno.Command(program, {
    args,
    stdin: "inherit",
    stdout: "null",
    stderr: "inherit",
  }).output();
  const ms = performance.now() - t0;
  const libc = Deno.dlopen("libc.so.6", {
    getrusage: { parameters: ["i32", "buffer"], result: "i32" },
  });
  const usage = new BigInt64Array(RUSAGE_LONGS);
  if (libc.symbols.getrusage(RUSAGE_CHILDREN, usage) !== 0) {
    throw new Error("getrusage failed");
  }
  libc.close();
  return { code, peakBytes: Number(usage[MAXRSS_INDEX]) * KIB, ms };
}

if (import.meta.main) {
  const [program, ...args] = Deno.args;
  console.log(JSON.stringify(await main(program, args)));
}
