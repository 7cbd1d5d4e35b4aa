/**
 * The cap on open event streams per client address (API.md
 * `MAX_STREAMS_PER_CLIENT`): each stream holds a connection and a place in
 * the job hub, so one address must not open thousands. This process's own
 * counts are kept in memory (the fast path: a client at its cap here is
 * refused without asking KV) and written to KV, where the other web
 * processes' counts are read from (queue/streams.ts).
 */
import { fallbackLogger, type Logger } from "../log.ts";
import type { Clock } from "../queue/clock.ts";
import { otherStreams, putStreamCount } from "../queue/streams.ts";
import { tooMany } from "./errors.ts";
import { InFlight } from "./_in_flight.ts";

/** How long this process's count outlives its last renewal (a crash). */
export const STREAM_COUNT_TTL_MS = 30_000;
/** Renewals per TTL: a late one or two still leave the entry live. */
const RENEWALS_PER_TTL = 3;
/**
 * How long a read of the other processes' counts of a client is used for
 * that client's new streams. Without it each new stream waited for a KV read
 * of its own, and 10,000 streams opening at once held their requests in the
 * heap meanwhile: about 13 KB more per stream (BENCH.md). So another
 * process's streams count here within a second and a read; each process's
 * own count reaches KV a write after each change anyway.
 */
export const OTHERS_FRESH_MS = 1_000;
/** A refused stream is told to try again after this. */
const STREAM_RETRY_MS = 10_000;

/** This process's open event streams, per client address. */
export class StreamSlots {
  readonly #process = crypto.randomUUID();
  readonly #open = new Map<string, number>();
  readonly #dirty = new Set<string>();
  /**
   * The other processes' streams of a client, one KV read at a time per
   * client: streams that open together (a burst of tabs, a page of jobs)
   * share the read in flight. A read per stream held a KV operation and its
   * buffers per waiting request, about 20 KB each at 10,000 at once (BENCH.md).
   */
  readonly #others = new InFlight((client: string) => {
    const at = this.clock.now();
    return otherStreams(this.kv, client, this.#process, at).then((others) => {
      this.#known.set(client, { others, at });
      return others;
    });
  });
  /** The last read of {@link otherStreams} per client with streams here. */
  readonly #known = new Map<string, { others: number; at: number }>();
  #flushing: Promise<void> | null = null;
  #renew: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly kv: Deno.Kv,
    private readonly clock: Clock,
    private readonly max: number,
    /** The process stops: renewals stop, the entries expire. */
    private readonly shutdown: AbortSignal,
    private readonly log: Logger = fallbackLogger,
  ) {
    shutdown.addEventListener("abort", () => this.#stopRenewing(), {
      once: true,
    });
  }

  /** Streams open in this process for `client`. */
  open(client: string): number {
    return this.#open.get(client) ?? 0;
  }

  /**
   * Takes a place for one stream of `client`, or throws 429 `rate_limited`.
   * Call the returned function (once or more) when the stream ends.
   */
  async enter(client: string): Promise<() => void> {
    if (this.open(client) >= this.max) throw this.#refuse();
    // A count read less than OTHERS_FRESH_MS ago is used; so is an older one
    // while a new read is on its way (in a burst a read can take a second:
    // every stream opened meanwhile would wait for it, held in the heap).
    const known = this.#known.get(client);
    const others = known &&
        (this.clock.now() - known.at < OTHERS_FRESH_MS ||
          this.#others.has(client))
      ? known.others
      : await this.#others.get(client);
    if (this.open(client) + others >= this.max) {
      if (this.open(client) === 0) this.#known.delete(client);
      throw this.#refuse();
    }
    this.#change(client, +1);
    let left = false;
    return () => {
      if (left) return;
      left = true;
      this.#change(client, -1);
    };
  }

  #stopRenewing() {
    this.#renew = void clearInterval(this.#renew);
  }

  #refuse() {
    return tooMany(
      "rate_limited",
      `This address has ${this.max} live views open; close some and try again.`,
      STREAM_RETRY_MS,
    );
  }

  #change(client: string, by: number) {
    const n = this.open(client) + by;
    if (n > 0) this.#open.set(client, n);
    else {
      this.#open.delete(client);
      this.#known.delete(client);
    }
    this.#dirty.add(client);
    this.#flush();
    if (this.#open.size > 0 && !this.shutdown.aborted) {
      this.#renew ??= setInterval(() => {
        for (const c of this.#open.keys()) this.#dirty.add(c);
        this.#flush();
      }, STREAM_COUNT_TTL_MS / RENEWALS_PER_TTL);
    } else this.#stopRenewing();
  }

  /**
   * Writes the changed counts, one flush at a time: changes that come while
   * one is written wait for the next, so a burst of opens costs a few writes.
   */
  #flush() {
    this.#flushing ??= (async () => {
      try {
        while (this.#dirty.size > 0) {
          const [client] = this.#dirty;
          this.#dirty.delete(client);
          await putStreamCount(
            this.kv,
            client,
            this.#process,
            this.open(client),
            this.clock.now(),
            STREAM_COUNT_TTL_MS,
          );
        }
      } catch (e) {
        // The KV store closed under a stopping process, or failed: the next
        // change or renewal writes again; the entries expire meanwhile.
        if (!this.shutdown.aborted) {
          this.log.error("streams.count_not_written", {}, e);
        }
        this.#dirty.clear();
      } finally {
        this.#flushing = null;
      }
    })();
  }

  /** Resolves once every change so far is written (for tests and shutdown). */
  async settled(): Promise<void> {
    while (this.#flushing) await this.#flushing;
  }
}
