import { Coalescer } from '../../../shared/catalog/coalesce';

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

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
});
