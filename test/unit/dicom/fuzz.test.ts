/**
 * The standing fuzz suite: mutations of the real fixtures (truncations, bit flips, length
 * fields, VR changes, nesting, item and element counts, deflate ratios; see
 * tools/fuzzInputs.ts) driven through the core as the ingestion drives it. Every case must end
 * in a typed outcome (success, or a PipelineError other than INTERNAL) within a time bound,
 * and the run within a memory bound and without a long block of the event loop.
 *
 * A fixed seed and a CI-sized budget; `npm run fuzz` (tools/fuzz.ts) runs longer, at larger
 * sizes, with FUZZ_RUNS / FUZZ_SEED / FUZZ_SCALE.
 */
import { fixtureFiles } from '../../../tools/fuzzInputs';
import type { FuzzSummary } from '../../../tools/fuzzRun';
import { callInFreshProcess } from '../transpiled';

const SEED = 20261201;
const RUNS = 400;
/** Per case; the slowest CI case (tens of thousands of inserted elements) takes about 2 s on a loaded 2-CPU machine. */
const CASE_TIME_BOUND_MS = 10_000;
/**
 * Growth of the RSS over the run: one file's work at the limits is about 100 MB, and a run
 * grows by 250-400 MB before V8 collects (more on a loaded machine, where collection lags). A
 * leak of the inputs would pass it within the first hundred cases.
 */
const RSS_GROWTH_BOUND_MB = 512;
/** Longest event-loop block, in CPU time: the core yields every 10 ms; GC pauses of a 100 MB heap come on top. */
const BLOCK_BOUND_MS = 1_000;
/** The whole run: 12 s here, alone; allowed far more on a loaded CI machine. */
const CHILD_TIMEOUT_MS = 300_000;

describe('fuzzing the core over mutations of the real fixtures', () => {
  it('has the fixtures to mutate', () => {
    expect(fixtureFiles().length).toBeGreaterThan(100);
  });

  it(`given ${RUNS} mutated fixtures (seed ${SEED}), then every case ends typed (never INTERNAL) within ${CASE_TIME_BOUND_MS} ms, within the memory bound and without a long event-loop block`, async () => {
    // A fresh process: the event loop and the RSS are the core's, not those of a jest worker
    // that has run other files (one full collection of its heap is a pause of hundreds of ms).
    const summary = await callInFreshProcess<FuzzSummary>(
      'tools/fuzzRun.ts',
      'runFuzz',
      [{ runs: RUNS, seed: SEED, scale: 1, timeBoundMs: CASE_TIME_BOUND_MS }],
      CHILD_TIMEOUT_MS,
    );
    expect(summary.cases).toBe(RUNS);
    expect(summary.internal).toEqual([]);
    expect(summary.slow).toEqual([]);
    // Mutations that reach the de-identification and ones stopped by each kind of defence.
    expect(summary.outcomes.OK ?? 0).toBeGreaterThan(RUNS / 10);
    expect(Object.keys(summary.outcomes).filter((k) => k.startsWith('DICOM_')).length).toBeGreaterThanOrEqual(4);
    expect(summary.rssGrowthMb).toBeLessThan(RSS_GROWTH_BOUND_MB);
    expect(summary.longestBlockMs).toBeLessThan(BLOCK_BOUND_MS);
  }, CHILD_TIMEOUT_MS + 10_000);
});
