/**
 * Coalesces repeated work per key within one process: while a run for a key is in flight,
 * every further request joins ONE queued run that starts when the current one ends. Each
 * caller's promise settles after a run that started after its call, so what the caller wrote
 * before calling is always seen; a burst of N requests costs two runs, not N.
 *
 * With `settleMs`, a run that would start at once on an idle key waits that long first, and
 * every request in the meantime joins it: a steady stream of requests (one per instance of a
 * series arriving) then costs one run per interval instead of one per request.
 */
export class Coalescer {
  private readonly states = new Map<string, { running?: Promise<void>; queued?: Promise<void> }>();

  constructor(private readonly settleMs = 0) {}

  run(key: string, work: () => Promise<void>): Promise<void> {
    let state = this.states.get(key);
    if (!state) {
      state = {};
      this.states.set(key, state);
    }
    if (state.queued) return state.queued;
    if (!state.running) {
      if (this.settleMs <= 0) return (state.running = this.launch(key, state, work));
      // Not started yet: callers until the timer fires join this run as the queued one.
      const s = state;
      s.queued = new Promise<void>((resolve) => setTimeout(resolve, this.settleMs)).then(() => {
        s.queued = undefined;
        return (s.running = this.launch(key, s, work));
      });
      return s.queued;
    }
    const s = state;
    const current = state.running;
    s.queued = current
      .catch(() => undefined)
      .then(() => {
        s.queued = undefined;
        return (s.running = this.launch(key, s, work));
      });
    return s.queued;
  }

  private launch(key: string, state: { running?: Promise<void>; queued?: Promise<void> }, work: () => Promise<void>): Promise<void> {
    return work().finally(() => {
      if (!state.queued) {
        state.running = undefined;
        this.states.delete(key);
      }
    });
  }
}
