/** The engine pool: its own bound, apart from the ingestion limiter. */
import { TesseractDetector } from '../../../../shared/dicom/pixels/tesseractDetector';

jest.setTimeout(300_000);

describe('given a TesseractDetector with one worker', () => {
  const detector = new TesseractDetector({ workers: 1 });
  afterAll(() => detector.close());

  it('when three frames are sent at once, then two wait in its queue and all three are answered (a blank frame: no words)', async () => {
    const blank = { width: 200, height: 100, data: new Uint8Array(200 * 100) };
    const jobs = [detector.detect(blank), detector.detect(blank), detector.detect(blank)];
    await new Promise((resolve) => setImmediate(resolve));
    expect(detector.queued).toBe(2);
    expect(await Promise.all(jobs)).toEqual([[], [], []]);
    expect(detector.queued).toBe(0);
  });

  it('rejects a pool size outside 1 to 16', () => {
    expect(() => new TesseractDetector({ workers: 0 })).toThrow('workers must be an integer from 1 to 16');
  });
});
