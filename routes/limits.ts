/**
 * The per-process upload caps (API.md `MAX_UPLOADS_IN_FLIGHT`,
 * `MAX_UPLOADS_IN_FLIGHT_PER_CLIENT`): how many bodies this process is
 * receiving at once, in all and per client address. They bound what slow or
 * stalled uploads can hold of this process's memory, so they are counted in
 * memory, per process (DESIGN.md, "Limits are counters in KV": the in-flight
 * ones are the exception).
 */
import type { Config } from "../config.ts";
import { busy, tooMany } from "./errors.ts";

/**
 * How long a refused upload is told to wait: an upload of a few MB on a
 * slow line takes seconds, so a place is likely free by then.
 */
export const IN_FLIGHT_RETRY_MS = 5_000;

/** The uploads this process is receiving, in all and per client address. */
export class UploadsInFlight {
  #total = 0;
  #byClient = new Map<string, number>();

  constructor(
    private readonly limits: Pick<
      Config,
      "maxUploadsInFlight" | "maxUploadsInFlightPerClient"
    >,
  ) {}

  /** Uploads being received now. */
  get total(): number {
    return this.#total;
  }

  /**
   * Takes a place for one upload from `client`, or throws 503 `busy` (the
   * process is full) or 429 `rate_limited` (this client has its share). The
   * place is given back when the returned value is disposed: `using`.
   */
  enter(client: string): Disposable {
    if (this.#total >= this.limits.maxUploadsInFlight) {
      throw busy(IN_FLIGHT_RETRY_MS);
    }
    const mine = this.#byClient.get(client) ?? 0;
    if (mine >= this.limits.maxUploadsInFlightPerClient) {
      throw tooMany(
        "rate_limited",
        `You are already sending ${mine} pictures at once; wait for one to finish.`,
        IN_FLIGHT_RETRY_MS,
      );
    }
    this.#total++;
    this.#byClient.set(client, mine + 1);
    let left = false;
    return {
      [Symbol.dispose]: () => {
        if (left) return;
        left = true;
        this.#total--;
        const n = this.#byClient.get(client)! - 1;
        if (n === 0) this.#byClient.delete(client);
        else this.#byClient.set(client, n);
      },
    };
  }
}
