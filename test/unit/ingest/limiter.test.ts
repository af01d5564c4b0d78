import { Limiter } from '../../../shared/ingest/limiter';
import { deferred } from '../fakes';

describe('Limiter', () => {
  it('given more tasks than slots, then no more than the limit run at once and all finish', async () => {
    const limiter = new Limiter(2);
    let running = 0;
    let peak = 0;
    const tasks = Array.from({ length: 6 }, () =>
      limiter.run(async () => {
        running++;
        peak = Math.max(peak, running);
        await new Promise((r) => setTimeout(r, 5));
        running--;
      }),
    );
    await Promise.all(tasks);
    expect(peak).toBe(2);
    expect(limiter.inUse).toBe(0);
  });

  it('given a task that releases early, then the next task starts while it is still running, and its slot is freed once', async () => {
    const limiter = new Limiter(1);
    const hold = deferred();
    const order: string[] = [];
    const first = limiter.run(async (release) => {
      order.push('first: file done');
      release();
      release();
      await hold.promise;
      order.push('first: catalog done');
    });
    const second = limiter.run(async () => void order.push('second: started'));
    await second;
    expect(order).toEqual(['first: file done', 'second: started']);
    hold.resolve();
    await first;
    expect(limiter.inUse).toBe(0);
    // The double release did not free a slot that was not held: one at a time still.
    let running = 0;
    let peak = 0;
    await Promise.all(Array.from({ length: 3 }, () => limiter.run(async () => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((r) => setTimeout(r, 2));
      running--;
    })));
    expect(peak).toBe(1);
  });
});
