/**
 * The core driven as the ingestion drives it (prepareDeidentifiedInstance over a stream, the
 * output consumed), with the event loop and the RSS watched: for test/unit/ingest/headerLimits.test.ts.
 * runTimed builds one of the crafted inputs and runs it; the test calls it in a fresh process.
 */
import { ByteReader } from '../../../shared/dicom/byteReader';
import { defaultProfile } from '../../../shared/dicom/deid/profile';
import { HeaderLimits } from '../../../shared/dicom/limits';
import { isPipelineError } from '../../../shared/errors';
import { prepareDeidentifiedInstance } from '../../../shared/ingest/deidentifyInstance';
import { EventLoopWatch } from '../../../tools/eventLoopWatch';
import { delimiter, elementHeader, instanceWith, manySequenceItems, manyTinyElements, manyUnknownPublicTags } from '../../../tools/fuzzInputs';

const key = Buffer.from('header limits test key, 32 bytes or more');
const profile = defaultProfile();

async function* chunks(bytes: Buffer, size = 4 * 1024 * 1024): AsyncGenerator<Uint8Array> {
  for (let o = 0; o < bytes.length; o += size) yield bytes.subarray(o, o + size);
}

export interface Run {
  code: string;
  outputBytes: number;
  /** Longest stretch without a turn of the event loop while the core worked, in CPU time (tools/eventLoopWatch.ts). */
  longestBlockMs: number;
  /** CPU time used over the run: work that never yields has one stretch this long. */
  watchedCpuMs: number;
  /** Growth of the resident set over the run, sampled between turns of the event loop. */
  rssGrowthMb: number;
  /** Wall time of the run. */
  elapsedMs: number;
}

/** Runs the core on `bytes` as the ingestion does, watching the event loop and the RSS. */
export async function runCore(bytes: Buffer, limits: Partial<HeaderLimits> = {}): Promise<Run> {
  const started = performance.now();
  const watch = new EventLoopWatch();
  const reader = new ByteReader(chunks(bytes));
  let code = 'OK';
  let outputBytes = 0;
  try {
    const prepared = await prepareDeidentifiedInstance(reader, {
      deid: { profile, key, keyId: 'test' },
      maxHeaderBytes: limits.maxHeaderBytes ?? 64 * 1024 * 1024,
      limits,
      totalSize: bytes.length,
      burnedIn: { mode: 'allow' },
    });
    for await (const c of prepared.output()) outputBytes += c.length;
  } catch (e) {
    code = isPipelineError(e) && e.code !== 'INTERNAL' ? e.code : `INTERNAL (${e instanceof Error ? e.name : typeof e})`;
  } finally {
    await reader.close();
  }
  const { longestBlockMs, watchedCpuMs, rssGrowthMb } = watch.stop();
  return { code, outputBytes, longestBlockMs, watchedCpuMs, rssGrowthMb, elapsedMs: performance.now() - started };
}

/** `count` items of Other Patient IDs Sequence, each with its own identifying value. */
function otherPatientIds(count: number): Buffer {
  const item = (id: string) => {
    const v = Buffer.from(id, 'latin1');
    const el = Buffer.concat([elementHeader(0x00100020, 'LO', v.length), v]);
    return Buffer.concat([delimiter(0xfffee000, el.length), el]);
  };
  return Buffer.concat([
    elementHeader(0x00101002, 'SQ', 0xffffffff),
    ...Array.from({ length: count }, (_, i) => item(`P${100_000 + i * 7}`)),
    delimiter(0xfffee0dd, 0),
  ]);
}

/** The crafted inputs of the timed tests, built where they run. */
const TIMED_INPUTS = {
  manySequenceItems: (n: number) => instanceWith(manySequenceItems(n)),
  manyTinyElements: (n: number) => instanceWith(manyTinyElements(n)),
  manyUnknownPublicTags: (n: number) => instanceWith(manyUnknownPublicTags(n)),
  /** n identifying values, and three times as many kept texts. */
  otherPatientIds: (n: number) => instanceWith([otherPatientIds(n), manyUnknownPublicTags(3 * n)]),
};
export type TimedInput = keyof typeof TIMED_INPUTS;

/** Builds `input` of size `n` and runs the core on it (the building is not watched). */
export function runTimed(input: TimedInput, n: number): Promise<Run> {
  return runCore(TIMED_INPUTS[input](n));
}
