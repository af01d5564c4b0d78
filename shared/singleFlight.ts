/**
 * Work named by a key that runs once at a time in this process: a caller asking for the same key
 * while it runs joins the run in progress and shares its result (or its failure), instead of
 * doing the work again. Once the run has settled, the next caller starts a new one.
 */
export class SingleFlight<T> {
  private readonly running = new Map<string, Promise<T>>();

  run(key: string, work: () => Promise<T>): Promise<T> {
    const same = this.running.get(key);
    if (same) return same;
    const run = (async () => work())().finally(() => this.running.delete(key));
    this.running.set(key, run);
    return run;
  }

  /** Runs in progress now. */
  get size(): number {
    return this.running.size;
  }
}
