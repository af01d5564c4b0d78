/**
 * The redact policy's decisions and its gate, with an in-memory TextDetector behind the same
 * interface as the engine (the engine itself is tested in ocrRedaction.test.ts).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { bufferReader } from '../../../shared/dicom/byteReader';
import { DicomDataset, encodeAsciiValue } from '../../../shared/dicom/dataset';
import { defaultProfile } from '../../../shared/dicom/deid/profile';
import { parseDicomBuffer } from '../../../shared/dicom/parser';
import type { GrayImage, TextBox, TextDetector } from '../../../shared/dicom/pixels/textDetector';
import { Tags } from '../../../shared/dicom/tags';
import { ErrorCodes, isPipelineError, PipelineError } from '../../../shared/errors';
import { BurnedInPolicy, decideBurnedIn, unflaggedImage } from '../../../shared/ingest/burnedIn';
import { prepareDeidentifiedInstance } from '../../../shared/ingest/deidentifyInstance';
import { identifyingText, isTextWord, mergeBoxes, sampleFrameIndexes } from '../../../shared/ingest/pixelText';
import { SeriesPixelChecks } from '../../../shared/ingest/seriesCheck';
import { encodeWithDataset } from './coreHelpers';

const FIXTURES = join(__dirname, '..', '..', 'fixtures', 'dicom');
const key = Buffer.from('ocr policy test key, 32 bytes....');

/** Answers the words it is given, except where the redaction zeroed a word's box since the first frame it saw. */
class ScriptedDetector implements TextDetector {
  calls = 0;
  private first?: GrayImage;
  constructor(private readonly words: TextBox[], private readonly fail = false) {}
  detect(image: GrayImage): Promise<TextBox[]> {
    this.calls++;
    if (this.fail) return Promise.reject(new PipelineError(ErrorCodes.OCR_FAILED, 'the OCR engine could not read a frame'));
    this.first ??= { ...image, data: Uint8Array.from(image.data) };
    const first = this.first;
    const lit = (img: GrayImage, [x, y, width, height]: TextBox['box']) => {
      for (let r = y; r < y + height; r++) for (let c = x; c < x + width; c++) if ((img.data[r * img.width + c] ?? 0) !== 0) return true;
      return false;
    };
    return Promise.resolve(this.words.filter((w) => lit(image, w.box) || !lit(first, w.box)));
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

function withFlag(ds: DicomDataset, tag: number, vr: string, value: string | undefined): DicomDataset {
  const out = new Map(ds);
  if (value === undefined) out.delete(tag);
  else out.set(tag, { tag, vr, value: encodeAsciiValue(value, vr) });
  return out;
}

async function header(fixture: string) {
  const parsed = await parseDicomBuffer(readFileSync(join(FIXTURES, fixture)));
  return parsed;
}

const engine: BurnedInPolicy = { mode: 'redact', ocr: { detector: new ScriptedDetector([]), sampleFrames: 5 } };

describe('given the redact policy', () => {
  it('an ultrasound flagged NO is OCR\'d all the same (the flag alone is not trusted for the types at risk)', async () => {
    const p = await header('deid/ultrasounds__GREYSCALE_IMAGE.dcm');
    const ds = withFlag(p.dataset, Tags.BurnedInAnnotation, 'CS', 'NO');
    const d = decideBurnedIn({ dataset: ds, littleEndian: true, pixelData: p.pixelData, sopClassUid: '1.2.840.10008.5.1.4.1.1.6.1', modality: 'US' }, engine, defaultProfile());
    expect(d.action).toBe('ocr');
  });

  it('a CT without the flag is OCR\'d as its series\' sample (and passes once its series read clean); a CT flagged NO passes; a CT flagged YES, or a CT screen save, is OCR\'d', async () => {
    const p = await header('dicom-test-files/dcmqi__segmentations__23x38x3__image__IMG0001.dcm');
    const le = p.encoding.littleEndian;
    const plain = withFlag(withFlag(p.dataset, Tags.BurnedInAnnotation, 'CS', undefined), Tags.ImageType, 'CS', 'ORIGINAL\\PRIMARY\\AXIAL');
    const input = (ds: DicomDataset, checkUnflagged?: boolean) => ({ dataset: ds, littleEndian: le, pixelData: p.pixelData, sopClassUid: '1.2.840.10008.5.1.4.1.1.2', modality: 'CT', ...(checkUnflagged === undefined ? {} : { checkUnflagged }) });
    expect(unflaggedImage(plain, p.pixelData, '1.2.840.10008.5.1.4.1.1.2', 'CT')).toBe(true);
    expect(decideBurnedIn(input(plain, true), engine, defaultProfile())).toMatchObject({ action: 'ocr', unflagged: true, risk: 'CT without BurnedInAnnotation, checked for its series' });
    expect(decideBurnedIn(input(plain, false), engine, defaultProfile()).action).toBe('pass');
    expect(decideBurnedIn(input(plain), engine, defaultProfile()).action).toBe('pass');
    // Not without an engine (the sharing re-derivation has none): an unflagged CT is not held for want of one.
    expect(decideBurnedIn(input(plain, true), { mode: 'redact' }, defaultProfile()).action).toBe('pass');
    const flaggedNo = withFlag(plain, Tags.BurnedInAnnotation, 'CS', 'NO');
    expect(unflaggedImage(flaggedNo, p.pixelData, '1.2.840.10008.5.1.4.1.1.2', 'CT')).toBe(false);
    expect(decideBurnedIn(input(flaggedNo, true), engine, defaultProfile()).action).toBe('pass');
    expect(decideBurnedIn(input(withFlag(plain, Tags.BurnedInAnnotation, 'CS', 'YES')), engine, defaultProfile()).action).toBe('ocr');
    expect(decideBurnedIn(input(withFlag(plain, Tags.ImageType, 'CS', 'DERIVED\\SECONDARY\\SCREEN SAVE')), engine, defaultProfile()).action).toBe('ocr');
  });

  it('compressed pixel data of a type at risk is OCR\'d once decoded where a decoder is at hand (RLE), and held, saying why, where none is', async () => {
    const p = await header('pydicom-data/OBXXXX1A_rle.dcm');
    const input = (transferSyntaxUid: string) => ({ dataset: p.dataset, littleEndian: true, pixelData: p.pixelData, sopClassUid: '1.2.840.10008.5.1.4.1.1.6.1', modality: 'US', transferSyntaxUid });
    expect(decideBurnedIn(input('1.2.840.10008.1.2.5'), engine, defaultProfile())).toMatchObject({ action: 'ocr', compressed: { transferSyntaxUid: '1.2.840.10008.1.2.5' }, geometry: { planar: false, frames: 1 } });
    const d = decideBurnedIn(input('1.2.840.10008.1.2.4.201'), engine, defaultProfile());
    expect(d).toEqual({ action: 'quarantine', reason: expect.stringContaining('cannot OCR compressed pixel data in transfer syntax 1.2.840.10008.1.2.4.201 (no decoder)') as unknown });
  });

  it('without an OCR engine, what would be OCR\'d is held', async () => {
    const p = await header('deid/ultrasounds__GREYSCALE_IMAGE.dcm');
    const d = decideBurnedIn({ dataset: p.dataset, littleEndian: true, pixelData: p.pixelData, sopClassUid: '1.2.840.10008.5.1.4.1.1.6.1', modality: 'US' }, { mode: 'redact' }, defaultProfile());
    expect(d).toEqual({ action: 'quarantine', reason: expect.stringContaining('no OCR engine configured') as unknown });
  });
});

describe('given the real ultrasound under the redact policy, with a scripted detector', () => {
  const source = readFileSync(join(FIXTURES, 'deid/ultrasounds__GREYSCALE_IMAGE.dcm'));
  const run = (detector: TextDetector) => prepareDeidentifiedInstance(bufferReader(source), {
    deid: { profile: defaultProfile(), key, keyId: 'test' },
    maxHeaderBytes: 1 << 24,
    totalSize: source.length,
    burnedIn: { mode: 'redact', ocr: { detector, sampleFrames: 5 } },
    readSourceRange: (offset, length) => Promise.resolve(source.subarray(offset, offset + length)),
  });
  const held = async (detector: TextDetector): Promise<string> => {
    try {
      await run(detector);
    } catch (e) {
      if (isPipelineError(e, ErrorCodes.DEID_BURNED_IN_ANNOTATION)) return e.message;
      throw e;
    }
    throw new Error('expected the file to be held');
  };

  it('when OCR fails, then the file is held for review', async () => {
    expect(await held(new ScriptedDetector([], true))).toMatch(/held for review: OCR failed$/);
  });

  it('when a date is still legible after redaction (text the detection pass missed), then the file is held naming the kind, not the value', async () => {
    const leftover: TextBox = { box: [300, 300, 200, 20], text: 'Exam 14 March 2019', confidence: 40 };
    // The detection pass reads one harmless label and misses the date; the gate's pass reads the date.
    const label: TextBox = { box: [20, 20, 120, 20], text: 'ABDOMEN', confidence: 90 };
    const missedFirst = new ScriptedDetector([leftover]);
    let call = 0;
    const detector: TextDetector = { detect: (image) => (++call === 1 ? Promise.resolve([label]) : missedFirst.detect(image)), close: () => Promise.resolve() };
    const message = await held(detector);
    expect(message).toMatch(/text still legible after redaction \(date\)/);
    expect(message).not.toMatch(/March|2019/);
  });

  it('when a poorly rated word sits on a line that reads as a date, then it is blacked out all the same', async () => {
    const word: TextBox = { box: [10, 5, 150, 20], text: '~~ 14 March 2019 ~~~~~~~~~~~~~~~~~~~~~~~~', confidence: 0 };
    expect(isTextWord(word, { width: 1024, height: 768 })).toBe(false);
    const prepared = await run(new ScriptedDetector([word]));
    expect(prepared.pixelsCleaned).toMatchObject({ boxes: 1, method: 'ocr' });
  });

  it('when the words found are blacked out, then the gate passes, the copy is marked, and the audit has the boxes and the frame sampled', async () => {
    const detector = new ScriptedDetector([{ box: [20, 700, 200, 20], text: 'JANE DOE', confidence: 90 }]);
    const prepared = await run(detector);
    expect(prepared.pixelsCleaned).toEqual({ boxes: 1, frames: 1, method: 'ocr', sampledFrames: [0] });
    expect(detector.calls).toBe(2);
  });
});

describe('given an unflagged CT whose pixels no decoder here reads (12-bit JPEG), under the redact policy with the series check', () => {
  const source = readFileSync(join(FIXTURES, 'ms-anonymizer/samples__I341.dcm'));
  const run = (file: Buffer, seriesChecks: SeriesPixelChecks, detector: ScriptedDetector) => prepareDeidentifiedInstance(bufferReader(file), {
    deid: { profile: defaultProfile(), key, keyId: 'test' },
    maxHeaderBytes: 1 << 24,
    totalSize: file.length,
    burnedIn: { mode: 'redact', ocr: { detector, sampleFrames: 5, seriesChecks } },
    readSourceRange: (offset, length) => Promise.resolve(file.subarray(offset, offset + length)),
  });

  it('then it passes unmarked as before the check, with no verdict for its series (the next image is tried); flagged YES, the same file is held', async () => {
    const checks = new SeriesPixelChecks();
    const detector = new ScriptedDetector([]);
    const prepared = await run(source, checks, detector);
    expect(prepared.pixelsCleaned).toBeUndefined();
    expect(detector.calls).toBe(0);
    expect(checks.size).toBe(0);
    const parsed = await parseDicomBuffer(source);
    const flagged = withFlag(parsed.dataset, Tags.BurnedInAnnotation, 'CS', 'YES');
    const yes = encodeWithDataset(parsed, flagged);
    await expect(run(yes, checks, detector)).rejects.toThrow(/held for review: frame 1 of the compressed pixel data could not be decoded/);
  });
});

describe('helpers', () => {
  it('samples spread over the clip, first and last included', () => {
    expect(sampleFrameIndexes(1, 5)).toEqual([0]);
    expect(sampleFrameIndexes(4, 5)).toEqual([0, 1, 2, 3]);
    expect(sampleFrameIndexes(100, 5)).toEqual([0, 25, 50, 74, 99]);
  });

  it('merges overlapping boxes into their bounds and keeps the others', () => {
    expect(mergeBoxes([[0, 0, 10, 10], [5, 5, 10, 10], [50, 50, 2, 2]])).toEqual([[0, 0, 15, 15], [50, 50, 2, 2]]);
  });

  it('finds the source\'s ID, a date and the source\'s name in OCR\'d lines, and nothing in anatomy read as text', () => {
    const ids = { names: ['DOE^JANE'], values: ['4815162342', '19610314'] };
    const line = (text: string, y = 0): TextBox => ({ box: [0, y, 50, 10], text, confidence: 80 });
    expect(identifyingText([line('ID'), { ...line('4815162342'), box: [60, 0, 80, 10] }], ids)).toContain('identifier');
    expect(identifyingText([line('14/03/1961')], ids)).toContain('date');
    expect(identifyingText([line('Jane'), { ...line('Doe'), box: [60, 0, 30, 10] }], ids)).toContain('name');
    expect(identifyingText([line('ee', 0), line('~|', 40)], ids)).toEqual([]);
  });
});
