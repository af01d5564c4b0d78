/**
 * A source that ends inside its pixel data fails with DICOM_TRUNCATED, and the same message,
 * whether or not its frames are read by range for OCR first. Found in the faults suite: a
 * truncated MR, picked as its series' sample for the pixel check in one run and not in the
 * others, was recorded once as INTERNAL ("short read of a frame", an untyped RangeError) and
 * otherwise as DICOM_TRUNCATED. The outcome of a file must not depend on which of its series
 * came first.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { bufferReader } from '../../../shared/dicom/byteReader';
import { defaultProfile } from '../../../shared/dicom/deid/profile';
import type { TextDetector } from '../../../shared/dicom/pixels/textDetector';
import { isPipelineError } from '../../../shared/errors';
import type { BurnedInPolicy } from '../../../shared/ingest/burnedIn';
import { prepareDeidentifiedInstance } from '../../../shared/ingest/deidentifyInstance';
import { SeriesPixelChecks } from '../../../shared/ingest/seriesCheck';

const FIXTURES = join(__dirname, '..', '..', 'fixtures', 'dicom');
const key = Buffer.from('truncated OCR test key, 32 bytes...');

/** Finds nothing: what is asked here is how the frames are read, not what is in them. */
const blank: TextDetector = { detect: () => Promise.resolve([]), close: () => Promise.resolve() };

/** The code and message the core ends with on `source`, its output consumed; 'OK' when it passes. */
async function outcome(source: Buffer, burnedIn: BurnedInPolicy, sizeKnown = true): Promise<string> {
  try {
    const prepared = await prepareDeidentifiedInstance(bufferReader(source), {
      deid: { profile: defaultProfile(), key, keyId: 'test' },
      maxHeaderBytes: 1 << 24,
      totalSize: sizeKnown ? source.length : undefined,
      burnedIn,
      // As the ingestion reads a range of the blob: what there is of it (a range past the end is cut short).
      readSourceRange: (offset, length) => Promise.resolve(source.subarray(offset, offset + length)),
    });
    for await (const chunk of prepared.output()) void chunk;
    return 'OK';
  } catch (e) {
    return isPipelineError(e) ? `${e.code}: ${e.message}` : `untyped ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`;
  }
}

const redact = (): BurnedInPolicy => ({ mode: 'redact', ocr: { detector: blank, sampleFrames: 5, seriesChecks: new SeriesPixelChecks() } });

describe('given a source that ends inside its pixel data', () => {
  it('the real truncated MR (62 bytes short), checked for its series under the redact policy, fails as it does without the check: DICOM_TRUNCATED', async () => {
    const source = readFileSync(join(FIXTURES, 'pydicom-deb', 'test_files__MR_truncated.dcm'));
    const without = await outcome(source, { mode: 'allow' });
    expect(without).toMatch(/^DICOM_TRUNCATED: /);
    expect(await outcome(source, redact())).toBe(without);
  });

  it('the real ultrasound (always OCR\'d under the redact policy) cut short by 1,000 bytes: DICOM_TRUNCATED, as under the allow policy', async () => {
    const whole = readFileSync(join(FIXTURES, 'deid', 'ultrasounds__GREYSCALE_IMAGE.dcm'));
    expect(await outcome(whole, redact())).toBe('OK');
    const source = whole.subarray(0, whole.length - 1000);
    const without = await outcome(source, { mode: 'allow' });
    expect(without).toMatch(/^DICOM_TRUNCATED: /);
    expect(await outcome(source, redact())).toBe(without);
    // Without the size up front, the frame read by range is what finds the end.
    expect(await outcome(source, redact(), false)).toBe(without);
  });

  describe('a real multi-frame JPEG ultrasound (8 frames in several fragments each), cut', () => {
    const whole = readFileSync(join(FIXTURES, 'dicomParser', 'encapsulated__multi-frame__IM00001.fragmented_no_bot_jpeg_baseline.50.dcm'));
    const ends = (at: number) => whole.subarray(0, at);
    /** Where each item header of the pixel data starts, and the first byte after the sequence delimiter. */
    const itemHeaders = (() => {
      const at: number[] = [];
      let o = whole.indexOf(Buffer.from([0xe0, 0x7f, 0x10, 0x00])) + 12;
      for (;;) {
        at.push(o);
        if (whole.readUInt16LE(o) === 0xfffe && whole.readUInt16LE(o + 2) === 0xe0dd) return at;
        o += 8 + whole.readUInt32LE(o + 4);
      }
    })();
    const last = itemHeaders[itemHeaders.length - 2]!;

    it('passes whole under both policies (the cuts below are what fails)', async () => {
      expect(itemHeaders.length).toBeGreaterThan(10);
      expect(await outcome(whole, { mode: 'allow' })).toBe('OK');
      expect(await outcome(whole, redact())).toBe('OK');
    });

    it.each([
      ['inside its last fragment (the fragment declares more than the file holds)', () => whole.length - 1000, /^DICOM_ELEMENT_TOO_LARGE: /],
      ['inside an item header', () => last + 3, /^DICOM_TRUNCATED: file ends 5 bytes before the end of an element$/],
      ['at the end of a fragment, without the sequence delimiter', () => whole.length - 8, /^DICOM_TRUNCATED: file ends 8 bytes before the end of an element$/],
    ])('%s: the same failure under the redact policy as under the allow policy, not held as pixels that cannot be located', async (_, at, expected) => {
      const source = ends(at());
      const without = await outcome(source, { mode: 'allow' });
      expect(without).toMatch(expected);
      expect(await outcome(source, redact())).toBe(without);
    });
  });
});
