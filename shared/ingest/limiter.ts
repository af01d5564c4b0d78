/** Bounds how many ingestions run at once in one instance: memory and connections stay flat under a burst. */
export class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly max: number) {}

  /**
   * Runs the task in a slot. The task may call `release` to give its slot up early, once it
   * holds nothing the limit is about (its file's bytes); the slot is freed once either way.
   */
  async run<T>(task: (release: () => void) => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.active++;
    let held = true;
    const release = () => {
      if (!held) return;
      held = false;
      this.active--;
      this.waiting.shift()?.();
    };
    try {
      return await task(release);
    } finally {
      release();
    }
  }

  /** Slots in use now. */
  get inUse(): number {
    return this.active;
  }
}
