/**
 * `npm run fuzz`: the nightly fuzz run of the pipeline core over mutations of the real
 * fixtures (see tools/fuzzInputs.ts), longer than the one in the unit tests
 * (test/unit/dicom/fuzz.test.ts). Prints the outcomes by code, the peak RSS, the longest
 * event-loop block and the slowest case as JSON; exits 1 when a case ended untyped
 * (INTERNAL) or took longer than the time bound.
 *
 *   FUZZ_RUNS     cases (default 3000)
 *   FUZZ_SEED     seed (default 20261201); the same seed gives the same cases
 *   FUZZ_SCALE    sizes of inserted items, elements, nesting and deflate bombs (default 4)
 *   FUZZ_TIME_MS  time bound per case (default 10000)
 */
import { runFuzz } from './fuzzRun';

function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  const n = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a whole number`);
  return n;
}

async function main(): Promise<void> {
  const runs = envInt('FUZZ_RUNS', 3000);
  const seed = envInt('FUZZ_SEED', 20261201);
  const scale = Math.max(1, envInt('FUZZ_SCALE', 4));
  const timeBoundMs = envInt('FUZZ_TIME_MS', 10_000);
  const started = performance.now();
  const summary = await runFuzz({
    runs,
    seed,
    scale,
    timeBoundMs,
    onCase: (done) => {
      if (done % 500 === 0) process.stderr.write(`${done}/${runs}\n`);
    },
  });
  const seconds = Math.round((performance.now() - started) / 100) / 10;
  process.stdout.write(`${JSON.stringify({ runs, seed, scale, timeBoundMs, seconds, ...summary }, null, 2)}\n`);
  if (summary.internal.length > 0 || summary.slow.length > 0) process.exitCode = 1;
}

main().catch((e: unknown) => {
  process.stderr.write(`fuzz run failed: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
