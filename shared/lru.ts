/**
 * A map that keeps at most `max` entries (or, with `weigh`, entries weighing at most `max` in
 * all), the least recently used forgotten first: for what one process remembers to save a
 * request (documents it wrote, lookups, verified tokens, verdicts, metadata), which must not grow
 * with everything the process has seen.
 */
export class Lru<V> {
  private readonly map = new Map<string, V>();
  private weight = 0;

  constructor(
    readonly max: number,
    private readonly weigh: (value: V) => number = () => 1,
  ) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError('an Lru keeps at least one entry');
  }

  /** The value (now the most recently used), or undefined. */
  get(key: string): V | undefined {
    const value = this.map.get(key);
    if (value !== undefined) {
      this.map.delete(key);
      this.map.set(key, value);
    }
    return value;
  }

  /** Keeps the value as the most recently used; beyond `max`, the least recently used go. */
  set(key: string, value: V): void {
    this.delete(key);
    this.map.set(key, value);
    this.weight += this.weigh(value);
    for (const [oldest, old] of this.map) {
      if (this.weight <= this.max) break;
      this.map.delete(oldest);
      this.weight -= this.weigh(old);
    }
  }

  delete(key: string): boolean {
    const old = this.map.get(key);
    if (old === undefined) return false;
    this.map.delete(key);
    this.weight -= this.weigh(old);
    return true;
  }

  get size(): number {
    return this.map.size;
  }
}
