/**
 * Drives the pipeline core on one input as the ingestion does: prepareDeidentifiedInstance
 * over a stream, the output consumed (counted, not kept). Every failure is classified by code.
 */
import fc from 'fast-check';

import { ByteReader } from '../shared/dicom/byteReader';
import { defaultProfile } from '../shared/dicom/deid/profile';
import type { HeaderLimits } from '../shared/dicom/limits';
import { isPipelineError } from '../shared/errors';
import { prepareDeidentifiedInstance } from '../shared/ingest/deidentifyInstance';
import { EventLoopReport, EventLoopWatch } from './eventLoopWatch';
import { buildCase, fixtureFiles, fuzzCaseArbitrary } from './fuzzInputs';

/** A fixed key: research identifiers made with it mean nothing anywhere else. */
export const FUZZ_DEID_KEY = Buffer.from('vna-fuzz-deid-key-not-for-production-use-0123456789', 'utf8');
const profile = defaultProfile();

/** What one run came to: 'OK' (with the output size) or the error code; INTERNAL for anything untyped. */
export interface CoreOutcome {
  code: string;
  outputBytes: number;
  /** The message of an untyped failure, for the runner's report (never PHI: fuzz inputs are synthetic). */
  detail?: string;
}

/** The source in chunks of `chunkSize`, as a blob download delivers it. */
async function* chunked(bytes: Buffer, chunkSize: number): AsyncGenerator<Uint8Array> {
  for (let o = 0; o < bytes.length; o += chunkSize) yield bytes.subarray(o, Math.min(bytes.length, o + chunkSize));
}

export async function runCore(bytes: Buffer, options: { limits?: Partial<HeaderLimits>; chunkSize?: number } = {}): Promise<CoreOutcome> {
  const reader = new ByteReader(chunked(bytes, options.chunkSize ?? 4 * 1024 * 1024));
  try {
    const prepared = await prepareDeidentifiedInstance(reader, {
      deid: { profile, key: FUZZ_DEID_KEY, keyId: 'fuzz' },
      maxHeaderBytes: options.limits?.maxHeaderBytes ?? 64 * 1024 * 1024,
      limits: options.limits,
      totalSize: bytes.length,
      burnedIn: { mode: 'allow' },
    });
    let outputBytes = 0;
    for await (const c of prepared.output()) outputBytes += c.length;
    return { code: 'OK', outputBytes };
  } catch (e) {
    if (isPipelineError(e) && e.code !== 'INTERNAL') return { code: e.code, outputBytes: 0 };
    return { code: 'INTERNAL', outputBytes: 0, detail: e instanceof Error ? `${e.name}: ${e.message}`.slice(0, 200) : typeof e };
  } finally {
    await reader.close();
  }
}

/** What a series of fuzz cases came to. */
export interface FuzzSummary {
  cases: number;
  outcomes: Record<string, number>;
  /** Cases that ended untyped (INTERNAL), with their case and message. */
  internal: { case: unknown; detail?: string }[];
  /** Cases that took longer than the time bound. */
  slow: { case: unknown; ms: number }[];
  slowestMs: number;
  /** Longest stretch without a turn of the event loop (a 1 ms timer's largest gap), in CPU time, and in wall time. */
  longestBlockMs: number;
  longestBlockWallMs: number;
  /** Peak resident set of the process (so far in its life), and the growth of the sampled RSS over the run's start. */
  peakRssMb: number;
  rssGrowthMb: number;
}

/**
 * Runs cases one after the other, watching the event loop (a 1 ms timer) and the RSS. `build`
 * makes a case's bytes. Cases over `timeBoundMs` are listed in `slow`; nothing throws.
 */
export async function runFuzzCases<C>(
  cases: Iterable<C>,
  build: (c: C) => Promise<Buffer>,
  options: { timeBoundMs: number; limits?: Partial<HeaderLimits>; onCase?: (c: C, outcome: CoreOutcome, ms: number) => void },
): Promise<FuzzSummary> {
  const watch = new EventLoopWatch();
  watch.pause();
  const summary: FuzzSummary = { cases: 0, outcomes: {}, internal: [], slow: [], slowestMs: 0, longestBlockMs: 0, longestBlockWallMs: 0, peakRssMb: 0, rssGrowthMb: 0 };
  let report: EventLoopReport;
  try {
    for (const c of cases) {
      const bytes = await build(c);
      // Building a case is not the core's work: the watch of the event loop starts after it.
      watch.resume();
      const t0 = performance.now();
      const outcome = await runCore(bytes, { limits: options.limits });
      const ms = performance.now() - t0;
      watch.pause();
      summary.cases++;
      summary.outcomes[outcome.code] = (summary.outcomes[outcome.code] ?? 0) + 1;
      if (outcome.code === 'INTERNAL') summary.internal.push({ case: c, detail: outcome.detail });
      if (ms > options.timeBoundMs) summary.slow.push({ case: c, ms: Math.round(ms) });
      summary.slowestMs = Math.max(summary.slowestMs, ms);
      options.onCase?.(c, outcome, ms);
    }
  } finally {
    report = watch.stop();
  }
  summary.slowestMs = Math.round(summary.slowestMs);
  summary.longestBlockMs = Math.round(report.longestBlockMs);
  summary.longestBlockWallMs = Math.round(report.longestBlockWallMs);
  // The process's own peak (getrusage) catches what the samples miss.
  summary.peakRssMb = Math.round(Math.max(report.peakRssMb, process.resourceUsage().maxRSS / 1024));
  summary.rssGrowthMb = Math.round(report.rssGrowthMb);
  return summary;
}

/** A fuzz run: how many cases, from which seed, at which scale, with the time bound per case. */
export interface FuzzOptions {
  runs: number;
  seed: number;
  /** Sizes of inserted items, elements, nesting and deflate bombs (1 is the unit tests' size). */
  scale: number;
  timeBoundMs: number;
  onCase?: (done: number) => void;
}

/**
 * Mutations of the real fixtures (tools/fuzzInputs.ts), the same ones for the same seed, run
 * through the core: `npm run fuzz` and the unit test (in a fresh process) both call it.
 */
export async function runFuzz(options: FuzzOptions): Promise<FuzzSummary> {
  const fixtures = fixtureFiles().map((f) => f.bytes);
  const cases = fc.sample(fuzzCaseArbitrary(fixtures.length, options.scale), { numRuns: options.runs, seed: options.seed });
  let done = 0;
  return runFuzzCases(cases, (c) => buildCase(c, fixtures), { timeBoundMs: options.timeBoundMs, onCase: () => options.onCase?.(++done) });
}
