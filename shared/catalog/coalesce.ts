/**
 * Coalesces repeated work per key within one process: while a run for a key is in flight,
 * every further request joins ONE queued run that starts when the current one ends. Each
 * caller's promise settles after a run that started after its call, so what the caller wrote
 * before calling is always seen; a burst of N requests costs two runs, not N.
 */
export class Coalescer {
  private readonly states = new Map<string, { running?: Promise<void>; queued?: Promise<void> }>();

  run(key: string, work: () => Promise<void>): Promise<void> {
    let state = this.states.get(key);
    if (!state) {
      state = {};
      this.states.set(key, state);
    }
    if (state.queued) return state.queued;
    if (!state.running) return (state.running = this.launch(key, state, work));
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
