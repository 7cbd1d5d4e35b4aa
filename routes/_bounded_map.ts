/**
 * One cache policy for the routes' memos (verified cookies, checked video
 * signatures, done videos' owners, codec strings): a Map that forgets its
 * oldest entry once it holds `max`, so no memo grows with traffic. What is
 * memoised never changes (a signature stays valid until it expires, a done
 * video keeps its owner), so forgetting only costs a recomputation.
 */
export class BoundedMap<K, V> extends Map<K, V> {
  constructor(readonly max: number) {
    super();
    if (!(max >= 1)) throw new RangeError(`max must be at least 1, not ${max}`);
  }

  /** Adds or replaces; a new key past `max` evicts the oldest one. */
  override set(key: K, value: V): this {
    if (!this.has(key) && this.size >= this.max) {
      this.delete(this.keys().next().value!);
    }
    return super.set(key, value);
  }
}
