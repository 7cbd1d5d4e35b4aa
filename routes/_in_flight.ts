/**
 * One read per key at a time: the callers that ask while it runs share it
 * (many streams opening at once for one job or one client). Unlike
 * `SharedRead` (queue/view.ts), a caller may get a read begun before it
 * asked: for what these reads answer (a job's owner, other processes' stream
 * counts) that is as good as a new one.
 */
export class InFlight<K, V> {
  readonly #reading = new Map<K, Promise<V>>();

  constructor(private readonly read: (key: K) => Promise<V>) {}

  get(key: K): Promise<V> {
    let reading = this.#reading.get(key);
    if (!reading) {
      reading = this.read(key).finally(() => this.#reading.delete(key));
      this.#reading.set(key, reading);
    }
    return reading;
  }

  /** Whether a read of `key` is on its way. */
  has(key: K): boolean {
    return this.#reading.has(key);
  }
}
