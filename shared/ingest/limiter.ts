/** Bounds how many ingestions run at once in one instance: memory and connections stay flat under a burst. */
export class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly max: number) {}

  /** A slot, once free; `first` goes ahead of the tasks already waiting. */
  private async acquire(first = false): Promise<void> {
    if (this.active >= this.max) await new Promise<void>((resolve) => (first ? this.waiting.unshift(resolve) : this.waiting.push(resolve)));
    this.active++;
  }

  private free(): void {
    this.active--;
    this.waiting.shift()?.();
  }

  /**
   * Runs the task in a slot. The task may call `release` to give its slot up early, once it
   * holds nothing the limit is about (its file's bytes); the slot is freed once either way.
   * It may also run a long wait outside its slot with `outside` (a file queued for OCR): the
   * slot goes to the next task meanwhile, and is taken again after, ahead of the tasks that
   * have not started (the file has waited already, and what it holds is kept short).
   */
  async run<T>(task: (release: () => void, outside: <U>(wait: () => Promise<U>) => Promise<U>) => Promise<T>): Promise<T> {
    await this.acquire();
    let held = true;
    const release = () => {
      if (!held) return;
      held = false;
      this.free();
    };
    const outside = async <U>(wait: () => Promise<U>): Promise<U> => {
      if (!held) return wait();
      release();
      try {
        return await wait();
      } finally {
        await this.acquire(true);
        held = true;
      }
    };
    try {
      return await task(release, outside);
    } finally {
      release();
    }
  }

  /** Slots in use now. */
  get inUse(): number {
    return this.active;
  }
}
