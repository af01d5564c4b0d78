import { CATALOG_REQUEST_TRIES, withTransientRetry } from '../../../shared/catalog/cosmosCatalog';

function failing(statuses: number[], result = 'done'): { op: () => Promise<string>; calls: () => number } {
  let calls = 0;
  return {
    op: async () => {
      const status = statuses[calls++];
      if (status !== undefined) throw Object.assign(new Error(`status ${status}`), { code: status });
      return result;
    },
    calls: () => calls,
  };
}

const noSleep = async () => undefined;

describe('withTransientRetry (one catalog request sent again when the service did not carry it out)', () => {
  it.each([408, 429, 449, 503])('given a %d answer and then success, then the request is sent again and its result returned', async (status) => {
    const f = failing([status]);
    await expect(withTransientRetry(f.op, noSleep)).resolves.toBe('done');
    expect(f.calls()).toBe(2);
  });

  it('given unavailable answers up to the last try, then the request succeeds on that try', async () => {
    const f = failing(Array(CATALOG_REQUEST_TRIES - 1).fill(503));
    await expect(withTransientRetry(f.op, noSleep)).resolves.toBe('done');
    expect(f.calls()).toBe(CATALOG_REQUEST_TRIES);
  });

  it('given unavailable answers on every try, then the last error goes up after CATALOG_REQUEST_TRIES tries', async () => {
    const f = failing(Array(CATALOG_REQUEST_TRIES + 5).fill(503));
    await expect(withTransientRetry(f.op, noSleep)).rejects.toMatchObject({ code: 503 });
    expect(f.calls()).toBe(CATALOG_REQUEST_TRIES);
  });

  it.each([404, 409, 412, 400, 500])('given a %d answer, then it goes up at once (a lost race, a missing document or a bad request is not retried here)', async (status) => {
    const f = failing([status]);
    await expect(withTransientRetry(f.op, noSleep)).rejects.toMatchObject({ code: status });
    expect(f.calls()).toBe(1);
  });

  it('given an error without a status (a client-side error), then it goes up at once', async () => {
    let calls = 0;
    await expect(withTransientRetry(async () => { calls++; throw new TypeError('bad'); }, noSleep)).rejects.toThrow('bad');
    expect(calls).toBe(1);
  });

  it('given retries, then it waits longer before each (jittered exponential backoff)', async () => {
    const waits: number[] = [];
    const f = failing(Array(CATALOG_REQUEST_TRIES - 1).fill(503));
    await withTransientRetry(f.op, async (ms) => { waits.push(ms); });
    expect(waits).toHaveLength(CATALOG_REQUEST_TRIES - 1);
    for (let i = 0; i < waits.length; i++) {
      expect(waits[i]).toBeGreaterThanOrEqual(25 * 2 ** i);
      expect(waits[i]).toBeLessThan(75 * 2 ** i);
    }
  });
});
