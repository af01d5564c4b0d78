/**
 * Coalesces repeated work per key within one process: while a run for a key is in flight,
 * every further request joins ONE queued run that starts when the current one ends. Each
 * caller's promise settles after a run that started after its call, so what the caller wrote
 * before calling is always seen; a burst of N requests costs two runs, not N.
 *
 * With `settleMs`, a run that would start at once on an idle key waits that long first, and
 * every request in the meantime joins it: a steady stream of requests (one per instance of a
 * series arriving) then costs one run per interval instead of one per request.
 *
 * With `minIntervalMs`, a queued run starts no sooner than that long after the start of the run
 * before it: under a sustained burst the key runs at most once per interval, however short a
 * run is, and every request of the interval joins the one queued run. The wait is only ever
 * for runs queued behind another; an idle key waits `settleMs` alone.
 */
interface KeyState {
  running?: Promise<void>;
  queued?: Promise<void>;
  /** When the last run of the key started (Date.now()). */
  startedAt?: number;
}

export class Coalescer {
  private readonly states = new Map<string, KeyState>();

  constructor(
    private readonly settleMs = 0,
    private readonly minIntervalMs = 0,
  ) {}

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
        const wait = (s.startedAt ?? 0) + this.minIntervalMs - Date.now();
        return wait > 0 ? new Promise<void>((resolve) => setTimeout(resolve, wait)) : undefined;
      })
      .then(() => {
        s.queued = undefined;
        return (s.running = this.launch(key, s, work));
      });
    return s.queued;
  }

  private launch(key: string, state: KeyState, work: () => Promise<void>): Promise<void> {
    state.startedAt = Date.now();
    return work().finally(() => {
      if (!state.queued) {
        state.running = undefined;
        this.states.delete(key);
      }
    });
  }
}
