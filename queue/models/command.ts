/**
 * `MODEL=command` (API.md "Models"): the operator's own program, run with
 * `sh -c MODEL_COMMAND` once per job. It reads the image at `IMG2VID_INPUT`,
 * writes a video at `IMG2VID_OUTPUT` and may print its progress; the shared
 * media step makes that video into the contract's clip.
 *
 * The program runs in a process group of its own (a new session), so that a
 * cancel or a timeout stops everything it started (a Python model's data
 * loader workers, an ffmpeg it calls), not only the shell.
 *
 * A worker killed with SIGKILL cannot end that group, and the program would
 * run on (holding the GPU) while its job runs again elsewhere. So each run
 * writes its group down in `groupsDir` (one file per job, with who wrote it),
 * and before each claim (`healthy`) any worker on the machine ends the groups
 * whose writer is dead: a restarted worker, or the next one to take the job,
 * stops the orphan before the job runs again.
 */
import { SECRETS } from "../../config.ts";
import { fallbackLogger, type Logger } from "../../log.ts";
import type {
  ModelAdapter,
  ModelResult,
  ModelRun,
  SlotInfo,
} from "./adapter.ts";
import { ModelError } from "./adapter.ts";
import { progressOf, readLines } from "./_lines.ts";

/** API.md "Models": SIGTERM, then SIGKILL this long after. */
export const KILL_GRACE_MS = 5_000;
/** Issue 11: a model's video over this is refused. */
export const MAX_OUTPUT_BYTES = 100 * 1024 * 1024;
/** How often a running model's video is measured against the limit. */
export const OUTPUT_CHECK_MS = 1_000;
/** How often a stopping group is looked at to see whether it is gone. */
const GROUP_POLL_MS = 50;
/** How long a killed group may take to go before the slot moves on. */
const KILL_WAIT_MS = 5_000;
/** How long the pipes may stay open once the group is gone (an escapee holds them). */
const DRAIN_MS = 1_000;
/** A job's error quotes at most this much of the program's last line. */
const ERROR_CHARS = 300;
/** Lines kept for the operator's log when a run fails. */
const TAIL_LINES = 20;
const BYTES_PER_MB = 1024 * 1024;

export interface CommandOptions {
  /** `MODEL_COMMAND`, run with `sh -c`. */
  command: string;
  /** The slot's id, `command:<worker id>`. */
  slotId: string;
  /** `MODEL_TIMEOUT_MS`: a longer run fails with `model_timeout`. */
  timeoutMs: number;
  /** Added to the worker's own environment (the job's variables win). */
  env?: Record<string, string>;
  /** {@link KILL_GRACE_MS} unless a test waits less. */
  killGraceMs?: number;
  /** {@link MAX_OUTPUT_BYTES} unless a test needs a smaller limit. */
  maxOutputBytes?: number;
  /** {@link OUTPUT_CHECK_MS} unless a test needs it sooner. */
  outputCheckMs?: number;
  /** Where a failed program's last lines go. */
  log?: Logger;
  /**
   * Where each running program's process group is written down, so that a
   * worker started after a crash ends what a killed worker left running
   * (`DATA_DIR/command-groups`). None: nothing is written down.
   */
  groupsDir?: string;
}

/** A running program's group as written down in `groupsDir`. */
interface GroupRecord {
  job: string;
  host: string;
  /** The group's id: its leader's pid, and when that leader started. */
  group: number;
  groupStart: number | null;
  /** The worker process that started it, and when that process started. */
  worker: number;
  workerStart: number | null;
}

/** One slot that runs the operator's program per job. */
export class CommandAdapter implements ModelAdapter {
  readonly slots: readonly SlotInfo[];
  readonly #opts:
    & Required<Omit<CommandOptions, "env" | "groupsDir" | "log">>
    & Pick<CommandOptions, "groupsDir">
    & { env: Record<string, string> };

  constructor(opts: CommandOptions) {
    this.#opts = {
      killGraceMs: KILL_GRACE_MS,
      maxOutputBytes: MAX_OUTPUT_BYTES,
      outputCheckMs: OUTPUT_CHECK_MS,
      env: {},
      ...opts,
    };
    this.slots = [{ id: opts.slotId, kind: "command" }];
    this.#log = opts.log ?? fallbackLogger;
  }

  readonly #log: Logger;

  /**
   * A program is started per job: there is nothing to ask beforehand. But
   * before the slot claims a job, what dead workers left running goes.
   */
  async healthy(): Promise<boolean> {
    await this.endOrphans().catch((e) =>
      this.#log.error("model.orphans_failed", {}, e)
    );
    return true;
  }

  /**
   * Ends the process groups that workers on this machine wrote down and that
   * outlived them (`kill -9` of a worker): SIGTERM, SIGKILL after the grace.
   * A group whose leader's pid now names another process is not touched.
   * Returns the groups ended.
   */
  async endOrphans(): Promise<number[]> {
    const dir = this.#opts.groupsDir;
    if (!dir) return [];
    const ended: number[] = [];
    let names: string[];
    try {
      names = (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return [];
      throw e;
    }
    for (const name of names.filter((n) => n.endsWith(".json"))) {
      const path = `${dir}/${name}`;
      let rec: GroupRecord;
      try {
        rec = JSON.parse(await Deno.readTextFile(path));
      } catch {
        continue; // half written by a live worker, or gone meanwhile
      }
      if (rec.host !== Deno.hostname()) continue;
      const writer = procStat(rec.worker);
      if (writer && writer.start === rec.workerStart) continue; // still its own
      const leader = procStat(rec.group);
      const same = !leader || leader.start === rec.groupStart;
      if (same && groupAlive(rec.group)) {
        this.#log.info("model.orphan_ended", {
          job: rec.job,
          group: rec.group,
          worker: rec.worker,
        });
        await endGroup(rec.group, this.#opts.killGraceMs);
        ended.push(rec.group);
      }
      await removeIfThere(path);
    }
    return ended;
  }

  /** Writes down the group `run`'s program runs in; returns its file. */
  async #record(job: string, group: number): Promise<string | null> {
    const dir = this.#opts.groupsDir;
    if (!dir) return null;
    await Deno.mkdir(dir, { recursive: true });
    const path = `${dir}/${job}.json`;
    const rec: GroupRecord = {
      job,
      host: Deno.hostname(),
      group,
      groupStart: procStat(group)?.start ?? null,
      worker: Deno.pid,
      workerStart: procStat(Deno.pid)?.start ?? null,
    };
    // Whole or not at all: a reader never sees half a record.
    await Deno.writeTextFile(`${path}.part`, JSON.stringify(rec));
    await Deno.rename(`${path}.part`, path);
    return path;
  }

  async run(_slot: SlotInfo, run: ModelRun): Promise<ModelResult> {
    const opts = this.#opts;
    run.signal.throwIfAborted();
    // A video left by an earlier attempt of this job must not pass for this one's.
    await removeIfThere(run.output);
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command("sh", {
        args: ["-c", opts.command],
        // The worker's environment without the service's secrets: the
        // operator's program has no business with ADMIN_TOKEN.
        clearEnv: true,
        env: {
          ...programEnv(),
          ...opts.env,
          IMG2VID_INPUT: run.input,
          IMG2VID_OUTPUT: run.output,
          IMG2VID_JOB_ID: run.job.id,
          IMG2VID_WIDTH: String(run.job.image.width),
          IMG2VID_HEIGHT: String(run.job.image.height),
        },
        // A new session, so its own process group: its id is the child's pid.
        detached: true,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (e) {
      throw new ModelError(
        "model_failed",
        `The model could not be started (${(e as Error).message}).`,
      );
    }
    const group = child.pid;
    const grace = opts.killGraceMs;
    const record = await this.#record(run.job.id, group).catch((e) => {
      this.#log.error("model.group_unrecorded", { job: run.job.id }, e);
      return null;
    });
    // The encoder's child for the transcode loads meanwhile.
    run.begun?.();

    /** Why we stopped it, once we have: the run fails with that. */
    let stopped = null as { why: unknown } | null;
    let stopping: Promise<void> | null = null;
    const stop = (why: unknown) => {
      if (stopping) return;
      stopped = { why };
      stopping = endGroup(group, grace);
    };
    const timer = setTimeout(
      () =>
        stop(
          new ModelError(
            "model_timeout",
            `The model ran longer than ${seconds(opts.timeoutMs)}.`,
          ),
        ),
      opts.timeoutMs,
    );
    const onAbort = () => stop(run.signal.reason);
    run.signal.addEventListener("abort", onAbort, { once: true });
    if (run.signal.aborted) onAbort(); // while the group was written down
    const tooBig = (bytes: number) =>
      new ModelError(
        "model_output",
        `The model's video is ${megabytes(bytes)}, more than the ${
          megabytes(opts.maxOutputBytes)
        } allowed.`,
      );
    let measuring = false;
    const watch = setInterval(async () => {
      if (measuring) return;
      measuring = true;
      try {
        const bytes = await sizeOf(run.output);
        if (bytes > opts.maxOutputBytes) stop(tooBig(bytes));
      } catch { /* unreadable for now: measured again after the exit */ }
      measuring = false;
    }, opts.outputCheckMs);

    const said = { stdout: new Said(), stderr: new Said() };
    let last = -1;
    const heard = (from: Said) => (line: string) => {
      const percent = from.hear(line);
      if (percent !== null && percent !== last) {
        last = percent;
        run.progress(percent);
      }
    };
    const drained = new AbortController();
    const reading = Promise.all([
      readLines(child.stdout, heard(said.stdout), drained.signal),
      readLines(child.stderr, heard(said.stderr), drained.signal),
    ]);

    let status: Deno.CommandStatus;
    try {
      status = await child.status;
    } finally {
      clearTimeout(timer);
      clearInterval(watch);
      run.signal.removeEventListener("abort", onAbort);
    }
    // What the program left running in its group goes too, in every case.
    await (stopping ?? endGroup(group, grace));
    if (record) await removeIfThere(record);
    const drainTimer = setTimeout(() => drained.abort(), DRAIN_MS);
    await reading.finally(() => clearTimeout(drainTimer));

    if (stopped) {
      const { why } = stopped;
      if (why instanceof ModelError && why.code === "model_output") {
        await removeIfThere(run.output);
      }
      throw why;
    }
    if (!status.success) {
      const words = said.stderr.last || said.stdout.last;
      this.#log.error("model.exited", {
        job: run.job.id,
        exit: exitOf(status),
        said: [...said.stdout.tail, ...said.stderr.tail].join("\n"),
      });
      throw new ModelError(
        "model_failed",
        words ? words.slice(0, ERROR_CHARS) : `The model ${exitOf(status)}.`,
      );
    }
    const bytes = await sizeOf(run.output);
    if (bytes > opts.maxOutputBytes) {
      await removeIfThere(run.output);
      throw tooBig(bytes);
    }
    if (bytes <= 0) {
      throw new ModelError(
        "model_output",
        "The model ended well but wrote no video.",
      );
    }
    return "video";
  }
}

/** What one stream said: its last words (progress aside) and a short tail. */
class Said {
  last = "";
  tail: string[] = [];

  /** Keeps `line`; returns the progress it reports, if any. */
  hear(line: string): number | null {
    const text = line.trim();
    if (!text) return null;
    const percent = progressOf(text);
    // A bar is not an explanation: the line before it may be.
    if (percent === null) this.last = text;
    this.tail.push(text);
    if (this.tail.length > TAIL_LINES) this.tail.shift();
    return percent;
  }
}

/**
 * Ends process group `group`: SIGTERM, then SIGKILL `graceMs` later to
 * whatever is still alive. Resolves once nothing of it runs.
 */
export async function endGroup(group: number, graceMs: number): Promise<void> {
  if (!groupAlive(group)) return;
  signalGroup(group, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (groupAlive(group) && Date.now() < deadline) await pause();
  // SIGKILL cannot be ignored, but a process in an uninterruptible wait (a
  // driver call) ends only when the wait does: the slot does not wait for ever.
  const given = Date.now() + KILL_WAIT_MS;
  while (groupAlive(group)) {
    if (Date.now() > given) {
      fallbackLogger.error("model.outlived_sigkill", { group });
      return;
    }
    signalGroup(group, "SIGKILL");
    await pause();
  }
}

const pause = () => new Promise((r) => setTimeout(r, GROUP_POLL_MS));

function signalGroup(group: number, signal: Deno.Signal) {
  try {
    Deno.kill(-group, signal);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e; // else: gone already
  }
}

/**
 * Whether any process of `group` still runs. A zombie does not: it is dead,
 * waiting for a parent (for an orphan, init) to read its status, and no
 * signal reaches it; where init is slow to do that, the group would look
 * alive for ever.
 */
export function groupAlive(group: number): boolean {
  try {
    Deno.kill(-group, 0);
  } catch {
    return false;
  }
  let entries: Iterable<Deno.DirEntry>;
  try {
    entries = Deno.readDirSync("/proc");
  } catch {
    return true; // no /proc: the signal's word is all there is
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry.name)) continue;
    const stat = procStat(Number(entry.name));
    if (stat && stat.group === group && !DEAD.has(stat.state)) return true;
  }
  return false;
}

/** proc(5) states of a process that has exited. */
const DEAD = new Set(["Z", "X"]);

/**
 * A process's state, process group and start time (clock ticks after boot:
 * with the pid, it names one process) from /proc, or null when it is gone.
 */
export function procStat(
  pid: number,
): { state: string; group: number; start: number } | null {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // "pid (comm) state ppid pgrp ... starttime (22nd)": comm may hold
    // spaces and parentheses.
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return {
      state: fields[0],
      group: Number(fields[2]),
      start: Number(fields[19]),
    };
  } catch {
    return null;
  }
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).size;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return -1;
    throw e;
  }
}

async function removeIfThere(path: string): Promise<void> {
  await Deno.remove(path).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
}

function exitOf(status: Deno.CommandStatus): string {
  return status.signal
    ? `was killed by ${status.signal}`
    : `exited with code ${status.code}`;
}

const seconds = (ms: number) => `${Math.round(ms / 100) / 10} s`;
const megabytes = (bytes: number) =>
  bytes < BYTES_PER_MB
    ? `${bytes} bytes`
    : `${Math.round(bytes / BYTES_PER_MB * 10) / 10} MB`;

/** The worker's environment minus the variables `config.ts` keeps secret. */
function programEnv(): Record<string, string> {
  return Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([k]) => !SECRETS.has(k)),
  );
}
