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
import fc from 'fast-check';

import { EventLoopReport, EventLoopWatch } from '../../../tools/eventLoopWatch';
import { buildCase, fixtureFiles, FuzzCase, fuzzCaseArbitrary } from '../../../tools/fuzzInputs';
import { runCore } from '../../../tools/fuzzRun';

const SEED = 20261201;
const RUNS = 400;
/** Per case; the slowest CI case (tens of thousands of inserted elements) takes about 2 s on a loaded 2-CPU machine. */
const CASE_TIME_BOUND_MS = 10_000;
/**
 * Growth of the RSS over the run: one file's work at the limits is about 100 MB, and a run
 * grows by 250-400 MB before V8 collects (more on a loaded machine, where collection lags, and
 * in a jest worker that ran another file before). A leak of the inputs would pass it within
 * the first hundred cases.
 */
const RSS_GROWTH_BOUND_MB = 512;
/** Longest event-loop block, in CPU time: the core yields every 10 ms; GC pauses of a 100 MB heap come on top. */
const BLOCK_BOUND_MS = 1_000;

describe('fuzzing the core over mutations of the real fixtures', () => {
  const fixtures = fixtureFiles().map((f) => f.bytes);

  it('has the fixtures to mutate', () => {
    expect(fixtures.length).toBeGreaterThan(100);
  });

  it(`given ${RUNS} mutated fixtures (seed ${SEED}), then every case ends typed (never INTERNAL) within ${CASE_TIME_BOUND_MS} ms, within the memory bound and without a long event-loop block`, async () => {
    const outcomes: Record<string, number> = {};
    const watch = new EventLoopWatch();
    watch.pause();
    let report: EventLoopReport;
    try {
      await fc.assert(
        fc.asyncProperty(fuzzCaseArbitrary(fixtures.length), async (c: FuzzCase) => {
          const bytes = await buildCase(c, fixtures);
          // Building the case is the test's work, not the core's: the watch starts here.
          watch.resume();
          const t0 = performance.now();
          const outcome = await runCore(bytes);
          const ms = performance.now() - t0;
          watch.pause();
          outcomes[outcome.code] = (outcomes[outcome.code] ?? 0) + 1;
          expect({ code: outcome.code, detail: outcome.detail }).not.toMatchObject({ code: 'INTERNAL' });
          expect(ms).toBeLessThan(CASE_TIME_BOUND_MS);
        }),
        { seed: SEED, numRuns: RUNS, endOnFailure: true },
      );
    } finally {
      report = watch.stop();
    }
    const { rssGrowthMb, longestBlockMs } = report;
    expect(Object.values(outcomes).reduce((a, b) => a + b, 0)).toBe(RUNS);
    // Mutations that reach the de-identification and ones stopped by each kind of defence.
    expect(outcomes.OK ?? 0).toBeGreaterThan(RUNS / 10);
    expect(Object.keys(outcomes).filter((k) => k.startsWith('DICOM_')).length).toBeGreaterThanOrEqual(4);
    expect(rssGrowthMb).toBeLessThan(RSS_GROWTH_BOUND_MB);
    expect(longestBlockMs).toBeLessThan(BLOCK_BOUND_MS);
  });
});
