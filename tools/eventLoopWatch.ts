/**
 * Watches the event loop while some work runs: the longest stretch between two of its turns
 * (the gaps of a 1 ms timer) and the peak resident set.
 *
 * A stretch is measured in the CPU time the process used over it. Wall time also counts the
 * time the process waited for a CPU: on a loaded CI machine (jest workers and the emulators
 * on 2 cores) a million-item header that the core gets through in about 100 ms showed a gap
 * of 485 ms. The CPU time is what the work itself held the loop for; a core that does not
 * yield still shows its seconds. The wall-time figure is kept beside it for reports.
 */

/** CPU time the process has used (user and system, all threads), in ms. */
function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

export interface EventLoopReport {
  /** Longest stretch between two turns, in the CPU time the process used over it (ms). */
  longestBlockMs: number;
  /** The longest stretch in wall time (ms): waiting for a CPU included. */
  longestBlockWallMs: number;
  /** CPU time the process used while watched (ms): a loop that never turns has one stretch this long. */
  watchedCpuMs: number;
  /** Peak of the sampled RSS, and its growth over the start (MB). */
  peakRssMb: number;
  rssGrowthMb: number;
}

export class EventLoopWatch {
  private readonly rssStart = process.memoryUsage.rss();
  private peakRss = this.rssStart;
  private longestCpu = 0;
  private longestWall = 0;
  private watchedCpu = 0;
  private lastWall = performance.now();
  private lastCpu = cpuMs();
  private watching = true;
  private readonly timer = setInterval(() => this.sample(), 1);

  constructor() {
    this.timer.unref();
  }

  /** Stops counting stretches (work that is not the one watched, such as building an input). */
  pause(): void {
    this.sample();
    this.watching = false;
  }

  /** Counts stretches again, from now. */
  resume(): void {
    this.lastWall = performance.now();
    this.lastCpu = cpuMs();
    this.watching = true;
  }

  /** Ends the watch, the stretch up to now included. */
  stop(): EventLoopReport {
    this.sample();
    clearInterval(this.timer);
    const mb = (bytes: number) => bytes / (1024 * 1024);
    return {
      longestBlockMs: this.longestCpu,
      longestBlockWallMs: this.longestWall,
      watchedCpuMs: this.watchedCpu,
      peakRssMb: mb(this.peakRss),
      rssGrowthMb: mb(this.peakRss - this.rssStart),
    };
  }

  private sample(): void {
    const wall = performance.now();
    const cpu = cpuMs();
    if (this.watching) {
      this.longestCpu = Math.max(this.longestCpu, cpu - this.lastCpu);
      this.watchedCpu += cpu - this.lastCpu;
      this.longestWall = Math.max(this.longestWall, wall - this.lastWall);
    }
    this.lastWall = wall;
    this.lastCpu = cpu;
    this.peakRss = Math.max(this.peakRss, process.memoryUsage.rss());
  }
}
