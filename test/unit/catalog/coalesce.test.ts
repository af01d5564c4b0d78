import { Coalescer } from '../../../shared/catalog/coalesce';
import { deferred } from '../fakes';

describe('Coalescer', () => {
  it('given a burst of requests during a run, then one more run serves them all, after the first', async () => {
    const c = new Coalescer();
    const gates = [deferred(), deferred()];
    const started: number[] = [];
    let runs = 0;
    const work = () => {
      const n = runs++;
      started.push(n);
      return gates[n]!.promise;
    };
    const first = c.run('k', work);
    const burst = Array.from({ length: 10 }, () => c.run('k', work));
    expect(runs).toBe(1);
    gates[0]!.resolve();
    await first;
    gates[1]!.resolve();
    await Promise.all(burst);
    expect(runs).toBe(2);
    expect(started).toEqual([0, 1]);
  });

  it('given requests after everything settled, then a new run starts', async () => {
    const c = new Coalescer();
    let runs = 0;
    await c.run('k', async () => void runs++);
    await c.run('k', async () => void runs++);
    expect(runs).toBe(2);
  });

  it('given different keys, then they run independently', async () => {
    const c = new Coalescer();
    const hold = deferred();
    let other = false;
    const a = c.run('a', () => hold.promise);
    await c.run('b', async () => void (other = true));
    expect(other).toBe(true);
    hold.resolve();
    await a;
  });

  it('given a failing run, then its waiters see the error and the next request runs again', async () => {
    const c = new Coalescer();
    await expect(c.run('k', async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    let ran = false;
    await c.run('k', async () => void (ran = true));
    expect(ran).toBe(true);
  });

  it('given a settle time, then requests until it passes share one run that starts after it', async () => {
    const c = new Coalescer(40);
    let runs = 0;
    let startedAt = 0;
    const t0 = Date.now();
    const work = async () => {
      runs++;
      startedAt = Date.now();
    };
    const first = c.run('k', work);
    await new Promise((r) => setTimeout(r, 10));
    const later = Array.from({ length: 5 }, () => c.run('k', work));
    await Promise.all([first, ...later]);
    expect(runs).toBe(1);
    expect(startedAt - t0).toBeGreaterThanOrEqual(35);
    // A request after that run ended starts (after the settle time) a run of its own.
    await c.run('k', work);
    expect(runs).toBe(2);
  });

  it('given a settle time and a request during a run, then that request gets a run that starts after its call', async () => {
    const c = new Coalescer(5);
    const hold = deferred();
    const seen: number[] = [];
    let value = 0;
    const first = c.run('k', () => {
      const atStart = value;
      return hold.promise.then(() => void seen.push(atStart));
    });
    await new Promise((r) => setTimeout(r, 20));
    value = 1;
    const second = c.run('k', async () => void seen.push(value));
    hold.resolve();
    await Promise.all([first, second]);
    expect(seen).toEqual([0, 1]);
  });

  it('given a minimum interval and requests during a run, then the queued run starts that long after the run before it started, and serves them all', async () => {
    const c = new Coalescer(0, 60);
    const starts: number[] = [];
    const work = async () => {
      starts.push(Date.now());
      await new Promise((r) => setTimeout(r, 5));
    };
    const first = c.run('k', work);
    const during = Array.from({ length: 5 }, () => c.run('k', work));
    await first;
    // Still within the interval of the first run's start: these join the queued run too.
    const later = Array.from({ length: 5 }, () => c.run('k', work));
    await Promise.all([...during, ...later]);
    expect(starts).toHaveLength(2);
    expect((starts[1] as number) - (starts[0] as number)).toBeGreaterThanOrEqual(55);
  });

  it('given a minimum interval and a run longer than it, then the queued run starts as soon as that run ends', async () => {
    // An interval long enough that waiting it out again after the run (the fault) stands apart
    // from a loaded machine's delays (a pause of the process for a collection: 100-300 ms).
    const c = new Coalescer(0, 600);
    const hold = deferred();
    const events: string[] = [];
    const first = c.run('k', async () => {
      await hold.promise;
      events.push('first ended');
    });
    const second = c.run('k', async () => void events.push('second started'));
    await new Promise((r) => setTimeout(r, 650));
    const endedAt = Date.now();
    hold.resolve();
    await Promise.all([first, second]);
    expect(events).toEqual(['first ended', 'second started']);
    expect(Date.now() - endedAt).toBeLessThan(300);
  });

  it('given a minimum interval and an idle key, then a request runs at once', async () => {
    const c = new Coalescer(0, 10_000);
    let runs = 0;
    const t0 = Date.now();
    await c.run('k', async () => void runs++);
    await c.run('k', async () => void runs++);
    expect(runs).toBe(2);
    expect(Date.now() - t0).toBeLessThan(1000);
  });
});
