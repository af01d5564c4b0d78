import { retryOnConflict } from '../../../shared/catalog/retryOnConflict';
import { ErrorCodes, PipelineError } from '../../../shared/errors';

const conflict = () => new PipelineError(ErrorCodes.CATALOG_CONFLICT, 'changed by another writer');

/** A step that loses `losses` races, then returns its attempt number. */
function losing(losses: number): { step: (attempt: number) => Promise<number>; attempts: number[] } {
  const attempts: number[] = [];
  return {
    attempts,
    step: async (attempt) => {
      attempts.push(attempt);
      if (attempts.length <= losses) throw conflict();
      return attempt;
    },
  };
}

describe('retryOnConflict (a read-decide-write step decided again after it lost a race)', () => {
  it('given two lost races, then the step runs a third time, numbered, and its result is returned', async () => {
    const s = losing(2);
    await expect(retryOnConflict('the record', s.step)).resolves.toBe(3);
    expect(s.attempts).toEqual([1, 2, 3]);
  });

  it('given another error, then it goes up at once', async () => {
    const failure = new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'unavailable');
    let calls = 0;
    await expect(retryOnConflict('the record', async () => {
      calls++;
      throw failure;
    })).rejects.toBe(failure);
    expect(calls).toBe(1);
  });

  it('given a race lost on every attempt, then CATALOG_CONFLICT naming what kept changing, after maxAttempts, with the last conflict as cause', async () => {
    const s = losing(Infinity);
    const e = await retryOnConflict('the summary', s.step, { maxAttempts: 5 }).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: ErrorCodes.CATALOG_CONFLICT, message: 'the summary kept changing while it was written', transient: true });
    expect((e as Error).cause).toMatchObject({ message: 'changed by another writer' });
    expect(s.attempts).toEqual([1, 2, 3, 4, 5]);
  });

  it('given no maxAttempts, then it gives up after 20 attempts', async () => {
    const s = losing(Infinity);
    await expect(retryOnConflict('the record', s.step)).rejects.toMatchObject({ code: ErrorCodes.CATALOG_CONFLICT });
    expect(s.attempts).toHaveLength(20);
  });

  it('given a pause, then it waits after each lost attempt but the last, for what pauseMs says', async () => {
    const waits: number[] = [];
    const s = losing(Infinity);
    await expect(
      retryOnConflict('the record', s.step, { maxAttempts: 4, pauseMs: (failed) => failed * 10, sleep: async (ms) => void waits.push(ms) }),
    ).rejects.toMatchObject({ code: ErrorCodes.CATALOG_CONFLICT });
    expect(waits).toEqual([10, 20, 30]);
  });

  it('given no pause, then it never waits', async () => {
    const waits: number[] = [];
    const s = losing(3);
    await retryOnConflict('the record', s.step, { sleep: async (ms) => void waits.push(ms) });
    expect(waits).toEqual([]);
  });
});
