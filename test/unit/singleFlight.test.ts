import { SingleFlight } from '../../shared/singleFlight';
import { deferred } from './fakes';

describe('SingleFlight', () => {
  it('given a key asked for while its run is in progress, then the caller joins that run and shares its result', async () => {
    const flight = new SingleFlight<number>();
    const gate = deferred();
    let runs = 0;
    const work = async () => {
      runs++;
      await gate.promise;
      return runs;
    };
    const both = [flight.run('k', work), flight.run('k', work)];
    expect(flight.size).toBe(1);
    gate.resolve();
    expect(await Promise.all(both)).toEqual([1, 1]);
    expect(runs).toBe(1);
  });

  it('given another key, then it runs on its own', async () => {
    const flight = new SingleFlight<string>();
    expect(await Promise.all([flight.run('a', async () => 'a'), flight.run('b', async () => 'b')])).toEqual(['a', 'b']);
  });

  it('given a run that fails, then every caller joined to it gets the failure, and the next call runs again', async () => {
    const flight = new SingleFlight<string>();
    const gate = deferred();
    const failing = async () => {
      await gate.promise;
      throw new Error('transient');
    };
    const both = [flight.run('k', failing), flight.run('k', failing)];
    gate.resolve();
    for (const p of both) await expect(p).rejects.toThrow('transient');
    expect(flight.size).toBe(0);
    expect(await flight.run('k', async () => 'again')).toBe('again');
  });

  it('given work that throws before it returns a promise, then the call rejects and nothing stays in flight', async () => {
    const flight = new SingleFlight<string>();
    await expect(
      flight.run('k', () => {
        throw new Error('at once');
      }),
    ).rejects.toThrow('at once');
    expect(flight.size).toBe(0);
  });
});
