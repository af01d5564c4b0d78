/**
 * The redact policy over the bundled samples (test/fixtures/dicom, the files `npm start`
 * ingests): how many are held for burned-in text before (quarantine policy) and after (redact),
 * with the reasons; and the false-box rate of the OCR on the CT and MR samples, whose pixels
 * show anatomy and no text.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { bufferReader } from '../../../shared/dicom/byteReader';
import { asciiValue } from '../../../shared/dicom/dataset';
import { defaultProfile } from '../../../shared/dicom/deid/profile';
import { parseDicomBuffer } from '../../../shared/dicom/parser';
import { pixelGeometry } from '../../../shared/dicom/pixels/blackout';
import { pixelLook } from '../../../shared/dicom/pixels/grayFrame';
import { TesseractDetector } from '../../../shared/dicom/pixels/tesseractDetector';
import { Tags } from '../../../shared/dicom/tags';
import { isPipelineError } from '../../../shared/errors';
import type { BurnedInPolicy } from '../../../shared/ingest/burnedIn';
import { prepareDeidentifiedInstance } from '../../../shared/ingest/deidentifyInstance';
import { detectTextBoxes, readSampledFrames, sourceIdentifiers } from '../../../shared/ingest/pixelText';
import { SeriesPixelChecks } from '../../../shared/ingest/seriesCheck';

jest.setTimeout(900_000);

const FIXTURES = join(__dirname, '..', '..', 'fixtures', 'dicom');
const key = Buffer.from('ocr samples test key, 32 bytes...');
const detector = new TesseractDetector({ workers: 1 });
afterAll(() => detector.close());

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : /\.(tsv|md)$/.test(name) ? [] : [p];
  });
}

type Outcome = 'ingested' | 'held for burned-in text' | 'other failure';

async function outcome(file: Buffer, burnedIn: BurnedInPolicy): Promise<{ outcome: Outcome; reason?: string }> {
  try {
    const prepared = await prepareDeidentifiedInstance(bufferReader(file), {
      deid: { profile: defaultProfile(), key, keyId: 'test' },
      maxHeaderBytes: 1 << 26,
      totalSize: file.length,
      burnedIn,
      readSourceRange: (offset, length) => Promise.resolve(file.subarray(offset, offset + length)),
    });
    for await (const _ of prepared.output()) void _;
    return { outcome: 'ingested' };
  } catch (e) {
    if (isPipelineError(e, 'DEID_BURNED_IN_ANNOTATION')) return { outcome: 'held for burned-in text', reason: e.message.replace(/^.*held for review: /, '') };
    return { outcome: 'other failure' };
  }
}

describe('given the bundled samples', () => {
  const samples = files(FIXTURES).sort();

  it('under the redact policy, fewer are held for burned-in text than under the quarantine policy, and what is still held says why', async () => {
    const counts = { quarantine: new Map<Outcome, number>(), redact: new Map<Outcome, number>() };
    const reasons = new Map<string, number>();
    // As the runtime configures it: unflagged images of the other types checked once per series.
    const seriesChecks = new SeriesPixelChecks();
    for (const path of samples) {
      const file = readFileSync(path);
      for (const mode of ['quarantine', 'redact'] as const) {
        const r = await outcome(file, mode === 'redact' ? { mode, ocr: { detector, sampleFrames: 5, seriesChecks } } : { mode });
        counts[mode].set(r.outcome, (counts[mode].get(r.outcome) ?? 0) + 1);
        if (mode === 'redact' && r.reason) reasons.set(r.reason, (reasons.get(r.reason) ?? 0) + 1);
      }
    }
    const held = (m: Map<Outcome, number>) => m.get('held for burned-in text') ?? 0;
    const share = (m: Map<Outcome, number>) => `${held(m)}/${samples.length} (${((100 * held(m)) / samples.length).toFixed(1)}%)`;
    console.log([
      `samples: ${samples.length}`,
      `quarantine policy: ${JSON.stringify(Object.fromEntries(counts.quarantine))}; held for burned-in text ${share(counts.quarantine)}`,
      `redact policy: ${JSON.stringify(Object.fromEntries(counts.redact))}; held for burned-in text ${share(counts.redact)}`,
      `unflagged series (and image sizes) checked by OCR with a verdict: ${seriesChecks.size}`,
      'still held, by reason:',
      ...[...reasons].sort((a, b) => b[1] - a[1]).map(([r, n]) => `  ${n} × ${r}`),
    ].join('\n'));
    expect(held(counts.redact)).toBeLessThan(held(counts.quarantine));
    // Every file still held names why: nothing is held without a reason.
    expect([...reasons.values()].reduce((a, b) => a + b, 0)).toBe(held(counts.redact));
  });

  it('the OCR finds no text box on the CT and MR samples that show anatomy only (the false-box rate)', async () => {
    let images = 0;
    let withBoxes = 0;
    let boxes = 0;
    const screenSaves: string[] = [];
    for (const path of samples) {
      const file = readFileSync(path);
      let parsed;
      try {
        parsed = await parseDicomBuffer(file);
      } catch {
        continue;
      }
      const modality = asciiValue(parsed.dataset.get(Tags.Modality));
      if ((modality !== 'CT' && modality !== 'MR') || !parsed.pixelData) continue;
      const le = parsed.encoding.littleEndian;
      const layout = pixelGeometry(parsed.dataset, le, parsed.pixelData);
      if ('reason' in layout) continue;
      const look = pixelLook(parsed.dataset, le, layout.geometry);
      if ('reason' in look) continue;
      // Screen saves are the captures at risk: they may carry text, so they are no measure of false boxes.
      if ((asciiValue(parsed.dataset.get(Tags.ImageType)) ?? '').toUpperCase().includes('SCREEN SAVE')) {
        screenSaves.push(path);
        continue;
      }
      const pixels = parsed.pixelValue ?? Buffer.alloc(0);
      const frames = await readSampledFrames((o, l) => Promise.resolve(pixels.subarray(o, o + l)), 0, layout.geometry, 5);
      const found = await detectTextBoxes(frames, layout.geometry, look.look, detector, sourceIdentifiers(parsed.dataset));
      images += frames.indexes.length;
      if (found.length > 0) {
        withBoxes++;
        console.log(`boxes on ${path.slice(FIXTURES.length + 1)}: ${JSON.stringify(found)}`);
      }
      boxes += found.length;
    }
    console.log(`CT/MR native samples without SCREEN SAVE: ${images} frames OCR'd; files with a box: ${withBoxes}; boxes: ${boxes} (screen saves left out: ${screenSaves.length})`);
    expect(images).toBeGreaterThan(0);
    expect(boxes).toBe(0);
  });
});
