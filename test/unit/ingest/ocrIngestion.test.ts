/**
 * The redact policy through the ingestion use case: the sampled frames come from the source
 * store by range (the version being ingested), the copy written has the box blacked out, and
 * the index record's audit says how. The detector is an in-memory one behind the TextDetector
 * interface; the engine itself is tested in ocrRedaction.test.ts.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { defaultProfile } from '../../../shared/dicom/deid/profile';
import { parseDicomBuffer } from '../../../shared/dicom/parser';
import type { GrayImage, TextBox, TextDetector } from '../../../shared/dicom/pixels/textDetector';
import type { SourceLocation } from '../../../shared/events/ingestEvents';
import { ingestSourceFile, researchBlobName } from '../../../shared/ingest/ingestSourceFile';
import { memoryWorld } from '../fakes';

const FIXTURES = join(__dirname, '..', '..', 'fixtures', 'dicom');
const ENDPOINT = 'http://127.0.0.1:10000/devstoreaccount1';
const loc = (name: string): SourceLocation => ({ canonicalUrl: `${ENDPOINT}/anq-replica/${encodeURIComponent(name)}`, container: 'anq-replica', blobName: name });

/** Reports one word at a fixed place, and remembers the frames it was shown. */
class OneWord implements TextDetector {
  readonly seen: GrayImage[] = [];
  constructor(private readonly word: TextBox) {}
  detect(image: GrayImage): Promise<TextBox[]> {
    this.seen.push(image);
    return Promise.resolve(this.seen.length === 1 ? [this.word] : []);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

describe('given the real ultrasound (BurnedInAnnotation YES) landing under the redact policy', () => {
  it('then it is cataloged with the OCR box blacked out in the research copy, the source read by range for the frame, and the audit recording boxes and frames', async () => {
    const data = readFileSync(join(FIXTURES, 'deid/ultrasounds__GREYSCALE_IMAGE.dcm'));
    const w = memoryWorld(defaultProfile());
    const detector = new OneWord({ box: [100, 40, 200, 20], text: 'JANE DOE', confidence: 90 });
    w.deps.burnedIn = { mode: 'redact', ocr: { detector, sampleFrames: 5 } };
    w.source.put('anq-replica', 'us.dcm', data);
    const readsBefore = w.source.reads;
    const out = await ingestSourceFile(w.deps, { kind: 'created', eventId: 'evt-ocr', eventType: 'Microsoft.Storage.BlobCreated', url: loc('us.dcm').canonicalUrl }, loc('us.dcm'));
    expect(out.status).toBe('cataloged');
    // The frame came from the store by range, not from the stream.
    expect(w.source.reads).toBeGreaterThan(readsBefore);
    const source = await parseDicomBuffer(data);
    expect(Buffer.compare(Buffer.from(detector.seen[0]?.data ?? []), (source.pixelValue as Buffer).subarray(0, 1024 * 768))).toBe(0);
    const copy = await parseDicomBuffer(w.research.blobs.get(researchBlobName(out.research!))!.data);
    const px = copy.pixelValue as Buffer;
    const src = source.pixelValue as Buffer;
    // The word's box with its margin (35% of 20 px = 7 px) is zero; outside it nothing changed.
    let changedOutside = 0;
    for (let y = 0; y < 768; y++) {
      for (let x = 0; x < 1024; x++) {
        const i = y * 1024 + x;
        const inBox = x >= 93 && x < 307 && y >= 33 && y < 67;
        if (inBox) expect(px[i]).toBe(0);
        else if (px[i] !== src[i]) changedOutside++;
      }
    }
    expect(changedOutside).toBe(0);
    const record = w.index.all()[0]!;
    expect(record.deidentification?.pixelsCleaned).toEqual({ boxes: 1, frames: 1, method: 'ocr', sampledFrames: [0] });
  });
});
