import { azuriteConnectionString, cosmosEmulatorConnectionString } from '../../../local/emulators';
import { loadSettings } from '../../../shared/config/settings';
import { bufferReader, ByteReader } from '../../../shared/dicom/byteReader';
import { DicomDataset } from '../../../shared/dicom/dataset';
import { DEFAULT_LIMITS, runSliced } from '../../../shared/dicom/limits';
import { parseDicomBuffer, readHeader } from '../../../shared/dicom/parser';
import { ErrorCodes, httpStatusFor, isTransient, PipelineError } from '../../../shared/errors';
import { fixtureFiles, instanceWith, manyUnknownPublicTags } from '../../../tools/fuzzInputs';

const env = {
  SourceStorage: azuriteConnectionString(),
  CosmosDb: cosmosEmulatorConnectionString(),
  DEID_KEY: 'a-development-key-of-at-least-32-bytes!!',
};

describe('limit settings', () => {
  it('given no limit settings, then the defaults of shared/dicom/limits.ts', () => {
    const s = loadSettings(env);
    const { maxHeaderBytes: _bytes, ...rest } = DEFAULT_LIMITS;
    expect(s.headerLimits).toEqual(rest);
    expect(s.maxHeaderBytes).toBe(DEFAULT_LIMITS.maxHeaderBytes);
  });

  it('given each limit set, then each is read', () => {
    const s = loadSettings({
      ...env,
      MAX_HEADER_ELEMENTS: '5000',
      MAX_SEQUENCE_ITEMS: '700',
      MAX_SEQUENCE_DEPTH: '32',
      MAX_HEADER_MEMORY_BYTES: '2097152',
      MAX_INFLATED_BYTES: '4194304',
      MAX_INFLATION_RATIO: '50',
    });
    expect(s.headerLimits).toEqual({ maxElements: 5000, maxItems: 700, maxDepth: 32, maxHeaderMemoryBytes: 2097152, maxInflatedBytes: 4194304, maxInflationRatio: 50 });
  });

  it('given malformed or out-of-range limits, then one CONFIG_INVALID naming each of them', () => {
    let error: unknown;
    try {
      loadSettings({ ...env, MAX_HEADER_ELEMENTS: 'many', MAX_SEQUENCE_DEPTH: '100000', MAX_INFLATION_RATIO: '1' });
    } catch (e) {
      error = e;
    }
    expect(error).toMatchObject({ code: ErrorCodes.CONFIG_INVALID });
    const message = (error as Error).message;
    for (const name of ['MAX_HEADER_ELEMENTS', 'MAX_SEQUENCE_DEPTH', 'MAX_INFLATION_RATIO']) expect(message).toContain(name);
  });
});

describe('limit error codes', () => {
  it.each([ErrorCodes.DICOM_TOO_MANY_ELEMENTS, ErrorCodes.DICOM_HEADER_MEMORY_LIMIT, ErrorCodes.DICOM_INFLATION_LIMIT])(
    'given %s, then HTTP 413 and permanent (no retry)',
    (code) => {
      const e = new PipelineError(code, 'limit');
      expect(httpStatusFor(e)).toBe(413);
      expect(isTransient(e)).toBe(false);
    },
  );
});

describe('runSliced', () => {
  it('given 300 ms of work in small steps, then a timer gets turns while the work is still going', async () => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    // Each step notes how often the timer has run so far: without turns between slices the
    // count could not change before the work ends, however loaded the machine is.
    function* work(): Generator<void, number[]> {
      const end = performance.now() + 300;
      const seen: number[] = [];
      while (performance.now() < end) {
        seen.push(ticks);
        yield;
      }
      return seen;
    }
    const seen = await runSliced(work());
    clearInterval(timer);
    expect(seen.length).toBeGreaterThan(0);
    expect(new Set(seen).size).toBeGreaterThan(2);
  });
});

/** Values and items of two data sets, compared tag by tag. */
function flatten(ds: DicomDataset, path = ''): string[] {
  const out: string[] = [];
  for (const [tag, el] of [...ds].sort(([a], [b]) => a - b)) {
    if (el.items) el.items.forEach((item, i) => out.push(...flatten(item, `${path}${tag.toString(16)}[${i}].`)));
    else out.push(`${path}${tag.toString(16)}=${el.vr}:${Buffer.from(el.value ?? []).toString('hex')}`);
  }
  return out;
}

describe('the parser resumes where the buffer ran out', () => {
  const fixtures = fixtureFiles().filter((f) => f.bytes.length < 300_000).slice(0, 40);

  it.each(fixtures.map((f) => [f.name, f.bytes] as const))('given %s delivered in chunks of 61 bytes, then the same header as delivered whole', async (_name, bytes) => {
    const whole: Awaited<ReturnType<typeof parseDicomBuffer>> | Error = await parseDicomBuffer(bytes).catch((e: Error) => e);
    async function* smallChunks(): AsyncGenerator<Uint8Array> {
      for (let o = 0; o < bytes.length; o += 61) yield bytes.subarray(o, o + 61);
    }
    const chunked = await readHeader(new ByteReader(smallChunks()), { maxHeaderBytes: 1 << 30, totalSize: bytes.length }).catch((e: unknown) => e);
    if (whole instanceof Error) {
      expect(chunked).toMatchObject({ code: (whole as PipelineError).code });
      return;
    }
    expect(chunked).not.toBeInstanceOf(Error);
    const header = chunked as Awaited<ReturnType<typeof readHeader>>;
    expect(flatten(header.dataset)).toEqual(flatten(whole.dataset));
    expect(header.pixelData).toEqual(whole.pixelData);
  });

  it('given a header of 20,000 elements read from a growing buffer, then every value is intact after the buffer moved', async () => {
    const bytes = instanceWith(manyUnknownPublicTags(20_000));
    const header = await readHeader(bufferReader(bytes), { maxHeaderBytes: 1 << 30, totalSize: bytes.length });
    const values = [...header.dataset.values()].filter((el) => el.tag >>> 16 >= 0x0100);
    expect(values).toHaveLength(20_000);
    expect(values.every((el) => Buffer.from(el.value ?? []).toString('latin1') === 'AB')).toBe(true);
  });
});
