/**
 * One KV watch per job per process, shared by all of that job's listeners
 * (DESIGN.md, "Progress travels through KV": a watch per client costs
 * memory with every client, shared ones do not). The watch stops when the
 * last listener leaves.
 *
 * `kv.watch` does not see writes from another process on the same file
 * (denoland/deno#21640), so a web-only process polls the same keys instead.
 */
import { fallbackLogger, type Logger } from "../log.ts";
import { FINAL_STATUSES } from "../shared/api.ts";
import type { JobRecord, Progress } from "./jobs.ts";
import { keys } from "./keys.ts";

/** What a job looked like at one moment; `version` orders moments. */
export interface JobSnapshot {
  job: JobRecord | null;
  progress: Progress | null;
  /** The largest versionstamp among the watched keys: the SSE event id. */
  version: string;
}

type Listener = (snapshot: JobSnapshot) => void;

interface Entry {
  listeners: Set<Listener>;
  latest: JobSnapshot | null;
  stop: () => void;
}

export class JobHub {
  #entries = new Map<string, Entry>();
  #idleWaiters: (() => void)[] = [];

  constructor(
    private readonly kv: Deno.Kv,
    private readonly mode:
      & ({ watch: true } | { watch: false; pollMs: number })
      & {
        log?: Logger;
      },
  ) {}

  /** How many jobs are watched now (one KV watch or poll each). */
  get watching(): number {
    return this.#entries.size;
  }

  /** How many listeners there are, over all jobs. */
  get listeners(): number {
    let n = 0;
    for (const e of this.#entries.values()) n += e.listeners.size;
    return n;
  }

  /** How many listeners job `id` has in this process. */
  listenersOf(id: string): number {
    return this.#entries.get(id)?.listeners.size ?? 0;
  }

  /**
   * The job's latest state as its watch last saw it, or null when it is not
   * watched (or not seen yet): what a new listener of a watched job can be
   * answered from without a KV read of its own.
   */
  latest(id: string): JobSnapshot | null {
    return this.#entries.get(id)?.latest ?? null;
  }

  /** Resolves once no job is watched (every listener has gone). */
  idle(): Promise<void> {
    if (this.#entries.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /**
   * Calls `listener` with the job's current state (at once if known) and on
   * every change of its record, its progress or the line. Returns the
   * unsubscribe function.
   */
  subscribe(id: string, listener: Listener): () => void {
    let entry = this.#entries.get(id);
    if (!entry) {
      const created: Entry = {
        listeners: new Set(),
        latest: null,
        stop: () => {},
      };
      created.stop = this.#source(id, (snapshot) => {
        created.latest = snapshot;
        for (const l of created.listeners) l(snapshot);
      });
      this.#entries.set(id, created);
      entry = created;
    }
    entry.listeners.add(listener);
    if (entry.latest) listener(entry.latest);
    return () => {
      const current = this.#entries.get(id);
      if (!current?.listeners.delete(listener)) return;
      if (current.listeners.size === 0) {
        this.#entries.delete(id);
        current.stop();
        if (this.#entries.size === 0) {
          for (const w of this.#idleWaiters.splice(0)) w();
        }
      }
    };
  }

  /** Stops every watch (shutdown). */
  close(): void {
    for (const e of this.#entries.values()) e.stop();
    this.#entries.clear();
  }

  #source(id: string, emit: (s: JobSnapshot) => void): () => void {
    const watched = [keys.job(id), keys.progress(id), keys.depth()];
    const toSnapshot = (
      [job, progress, depth]: Deno.KvEntryMaybe<unknown>[],
    ): JobSnapshot => {
      const record = job.value as JobRecord | null;
      return {
        job: record,
        progress: progress.value as Progress | null,
        // An ended job's moment is its final record's: the line moving on
        // must not give the final event a new id (API.md, events: a
        // reconnect with the final event's id gets 204).
        version: record && FINAL_STATUSES.has(record.status)
          ? job.versionstamp!
          : [job, progress, depth]
            .map((e) => e.versionstamp ?? "")
            .reduce((a, b) => (a > b ? a : b)),
      };
    };
    if (this.mode.watch) {
      const reader = this.kv.watch(watched).getReader();
      (async () => {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) return;
          emit(toSnapshot(value));
        }
      })().catch(() => {/* cancelled */});
      return () => void reader.cancel().catch(() => {});
    }
    let last = "";
    let busy = false;
    const poll = async () => {
      if (busy) return;
      busy = true;
      try {
        const snapshot = toSnapshot(await this.kv.getMany(watched));
        if (snapshot.version !== last) {
          last = snapshot.version;
          emit(snapshot);
        }
      } finally {
        busy = false;
      }
    };
    const tick = () =>
      void poll().catch((e) =>
        (this.mode.log ?? fallbackLogger).error(
          "hub.poll_failed",
          { job: id },
          e,
        )
      );
    tick();
    const timer = setInterval(tick, this.mode.pollMs);
    return () => clearInterval(timer);
  }
}
