// This module is browser compatible.
/**
 * One cache policy for every memo (the routes' verified cookies, checked
 * video signatures, done videos' owners and codec strings; the page's
 * picture previews): a Map that forgets its oldest entry once it holds
 * `max`, so no memo grows with traffic. What is
 * memoised never changes (a signature stays valid until it expires, a done
 * video keeps its owner), so forgetting only costs a recomputation.
 */
export class BoundedMap<K, V> extends Map<K, V> {
  /** `onEvict` releases what an evicted value holds (a blob: URL). */
  constructor(
    readonly max: number,
    private readonly onEvict?: (value: V, key: K) => void,
  ) {
    super();
    if (!(max >= 1)) throw new RangeError(`max must be at least 1, not ${max}`);
  }

  /** Adds or replaces; a new key past `max` evicts the oldest one. */
  override set(key: K, value: V): this {
    if (!this.has(key) && this.size >= this.max) {
      const [oldest, value] = this.entries().next().value!;
      this.delete(oldest);
      this.onEvict?.(value, oldest);
    }
    return super.set(key, value);
  }
}
