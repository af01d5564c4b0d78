import { ErrorCodes, isPipelineError } from '../../../shared/errors';
import { encapsulatedValueEnd, frameRanges, parseFrameList, parseRange } from '../../../shared/retrieve/frames';
import { frameMediaType, negotiateBulkData, negotiateFrames, negotiateInstances, negotiateMetadata, parseAccept } from '../../../shared/retrieve/negotiate';

const EXPLICIT = '1.2.840.10008.1.2.1';
const JPEG = '1.2.840.10008.1.2.4.50';

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
    return undefined;
  } catch (e) {
    return isPipelineError(e) ? e.code : 'not a PipelineError';
  }
}

describe('Accept negotiation (no transcoding)', () => {
  test('given no Accept, then multipart instances in the stored syntax', () => {
    expect(negotiateInstances(parseAccept(null), [JPEG], true)).toEqual({ multipart: true });
  });

  test('given transfer-syntax=* or the stored syntax, then accepted; another syntax is 406', () => {
    expect(negotiateInstances(parseAccept('multipart/related; type="application/dicom"; transfer-syntax=*'), [JPEG, EXPLICIT], false)).toEqual({ multipart: true });
    expect(negotiateInstances(parseAccept(`multipart/related; type="application/dicom"; transfer-syntax=${JPEG}`), [JPEG], false)).toEqual({ multipart: true });
    expect(codeOf(() => negotiateInstances(parseAccept(`multipart/related; type="application/dicom"; transfer-syntax=${EXPLICIT}`), [JPEG], false))).toBe(ErrorCodes.NOT_ACCEPTABLE);
  });

  test('given application/dicom alone, then one bare instance, but 406 for a study (several instances)', () => {
    expect(negotiateInstances(parseAccept('application/dicom'), [EXPLICIT], true)).toEqual({ multipart: false });
    expect(codeOf(() => negotiateInstances(parseAccept('application/dicom'), [EXPLICIT], false))).toBe(ErrorCodes.NOT_ACCEPTABLE);
  });

  test('given a list with q values, then the most preferred acceptable range wins and q=0 is refused', () => {
    expect(negotiateInstances(parseAccept('application/dicom;q=0.5, multipart/related; type="application/dicom"'), [EXPLICIT], true)).toEqual({ multipart: true });
    expect(codeOf(() => negotiateInstances(parseAccept('multipart/related;q=0'), [EXPLICIT], true))).toBe(ErrorCodes.NOT_ACCEPTABLE);
  });

  test('given a quoted parameter holding commas and semicolons, then it stays one value of one range', () => {
    const ranges = parseAccept('multipart/related; type="application/dicom"; note="a, b; c", application/dicom;q=0.5');
    expect(ranges.map((r) => [r.mediaType, Object.fromEntries(r.params), r.q])).toEqual([
      ['multipart/related', { type: 'application/dicom', note: 'a, b; c' }, 1],
      ['application/dicom', {}, 0.5],
    ]);
  });

  test('given an unsupported media type, then 406; given a malformed range, then 400', () => {
    expect(codeOf(() => negotiateInstances(parseAccept('text/html'), [EXPLICIT], true))).toBe(ErrorCodes.NOT_ACCEPTABLE);
    expect(codeOf(() => parseAccept('garbage'))).toBe(ErrorCodes.QUERY_INVALID);
  });

  test('given frames, then the stored syntax media type, or octet-stream with transfer-syntax=* (as OHIF asks)', () => {
    expect(frameMediaType(JPEG)).toBe('image/jpeg');
    expect(frameMediaType('1.2.840.10008.1.2.4.80')).toBe('image/jls');
    expect(frameMediaType('1.2.840.10008.1.2.4.90')).toBe('image/jp2');
    expect(frameMediaType('1.2.840.10008.1.2.5')).toBe('image/dicom-rle');
    expect(frameMediaType(EXPLICIT)).toBe('application/octet-stream');
    expect(negotiateFrames(parseAccept(null), JPEG)).toEqual({ partType: 'image/jpeg' });
    expect(negotiateFrames(parseAccept('multipart/related; type="application/octet-stream"; transfer-syntax=*'), JPEG)).toEqual({ partType: 'application/octet-stream' });
    expect(codeOf(() => negotiateFrames(parseAccept('multipart/related; type="image/jpeg"'), EXPLICIT))).toBe(ErrorCodes.NOT_ACCEPTABLE);
    expect(codeOf(() => negotiateFrames(parseAccept(`multipart/related; type="application/octet-stream"; transfer-syntax=${EXPLICIT}`), JPEG))).toBe(ErrorCodes.NOT_ACCEPTABLE);
  });

  test('given bulk data and metadata requests, then their media types only', () => {
    expect(negotiateBulkData(parseAccept(null))).toEqual({ multipart: false });
    expect(negotiateBulkData(parseAccept('multipart/related; type="application/octet-stream"'))).toEqual({ multipart: true });
    expect(codeOf(() => negotiateBulkData(parseAccept('image/png')))).toBe(ErrorCodes.NOT_ACCEPTABLE);
    expect(() => negotiateMetadata(parseAccept('application/dicom+json'))).not.toThrow();
    expect(codeOf(() => negotiateMetadata(parseAccept('application/dicom')))).toBe(ErrorCodes.NOT_ACCEPTABLE);
  });
});

describe('frame lists and ranges', () => {
  test('given a frame list, then its numbers; anything but positive integers is 400 naming frames', () => {
    expect(parseFrameList('1,3,2')).toEqual([1, 3, 2]);
    for (const bad of ['', '0', '1,,2', '-1', 'a', '1.5']) {
      expect(codeOf(() => parseFrameList(bad))).toBe(ErrorCodes.QUERY_INVALID);
    }
  });

  test('given frame numbers, then native frames are slices, encapsulated frames their fragments, past the count 404', () => {
    expect(frameRanges({ kind: 'native', count: 3, offset: 100, frameLength: 10 }, 3)).toEqual([[120, 10]]);
    const encapsulated = { kind: 'encapsulated' as const, count: 2, frames: [[[10, 4]], [[22, 6], [36, 2]]] as [number, number][][] };
    expect(frameRanges(encapsulated, 2)).toEqual([[22, 6], [36, 2]]);
    expect(encapsulatedValueEnd(encapsulated)).toBe(46);
    expect(codeOf(() => frameRanges(encapsulated, 3))).toBe(ErrorCodes.NOT_FOUND);
    expect(codeOf(() => frameRanges({ kind: 'none' }, 1))).toBe(ErrorCodes.NOT_FOUND);
  });

  test('given Range headers, then one satisfiable range, the whole value when ignored, 416 past the end', () => {
    expect(parseRange('bytes=0-9', 100)).toEqual({ kind: 'partial', start: 0, end: 9 });
    expect(parseRange('bytes=90-', 100)).toEqual({ kind: 'partial', start: 90, end: 99 });
    expect(parseRange('bytes=-10', 100)).toEqual({ kind: 'partial', start: 90, end: 99 });
    expect(parseRange('bytes=50-500', 100)).toEqual({ kind: 'partial', start: 50, end: 99 });
    expect(parseRange(null, 100)).toEqual({ kind: 'whole' });
    expect(parseRange('bytes=0-1,5-6', 100)).toEqual({ kind: 'whole' });
    expect(codeOf(() => parseRange('bytes=100-', 100))).toBe(ErrorCodes.RANGE_NOT_SATISFIABLE);
  });
});
