import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { bufferReader } from '../../../shared/dicom/byteReader';
import { asciiValue, DicomDataset, DicomElement, encodeAsciiValue, Encoding, encodingOf, TransferSyntax } from '../../../shared/dicom/dataset';
import { defaultProfile } from '../../../shared/dicom/deid/profile';
import { ParsedDicom,parseDicomBuffer } from '../../../shared/dicom/parser';
import { Tags } from '../../../shared/dicom/tags';
import { encodeDataset, encodeFileMeta, encodePixelDataHeader } from '../../../shared/dicom/writer';
import { isPipelineError } from '../../../shared/errors';
import { prepareDeidentifiedInstance } from '../../../shared/ingest/deidentifyInstance';

const FIXTURES = join(__dirname, '..', '..', 'fixtures', 'dicom');
const key = Buffer.from('transfer syntax test key, 32 b..');
const JPEG_BASELINE = '1.2.840.10008.1.2.4.50';
const JPEG_EXTENDED = '1.2.840.10008.1.2.4.51';

async function deidentify(source: Buffer): Promise<{ bytes: Buffer; parsed: ParsedDicom; outputTs: string }> {
  const prepared = await prepareDeidentifiedInstance(bufferReader(source), {
    deid: { profile: defaultProfile(), key, keyId: 'test' },
    maxHeaderBytes: 1 << 24,
    totalSize: source.length,
    burnedIn: { mode: 'quarantine' },
  });
  const parts: Uint8Array[] = [];
  for await (const c of prepared.output()) parts.push(c);
  const bytes = Buffer.concat(parts);
  return { bytes, parsed: await parseDicomBuffer(bytes), outputTs: prepared.outputTs };
}

async function failureCode(source: Buffer): Promise<string> {
  try {
    await deidentify(source);
  } catch (e) {
    if (isPipelineError(e)) return e.code;
    throw e;
  }
  throw new Error('expected the file to fail');
}

/** A second file meta group: what a careless gateway leaves when it wraps a Part 10 file again. */
function secondMetaGroup(transferSyntaxUid: string): DicomDataset {
  const ts = encodeAsciiValue(transferSyntaxUid, 'UI');
  const tsElement = { tag: Tags.TransferSyntaxUID, vr: 'UI', value: ts };
  const groupLength = Buffer.alloc(4);
  groupLength.writeUInt32LE(8 + ts.length);
  return new Map<number, DicomElement>([
    [Tags.FileMetaInformationGroupLength, { tag: Tags.FileMetaInformationGroupLength, vr: 'UL', value: groupLength }],
    [Tags.TransferSyntaxUID, tsElement],
  ]);
}

/**
 * Rebuilds a parsed fixture: meta declaring `declaredTs`, its data set (split before `splitAt`
 * with `planted` in between, when given), its pixel data and what follows, all in `enc`.
 */
function rebuild(src: ParsedDicom, declaredTs: string, options: { planted?: DicomDataset; splitAt?: number; enc?: Encoding; meta?: boolean } = {}): Buffer {
  const enc = options.enc ?? src.encoding;
  const before: DicomDataset = new Map();
  const after: DicomDataset = new Map();
  for (const [tag, el] of src.dataset) (options.splitAt !== undefined && tag >= options.splitAt ? after : before).set(tag, el);
  const sopClass = asciiValue(src.dataset.get(Tags.SOPClassUID)) ?? '';
  const sopInstance = asciiValue(src.dataset.get(Tags.SOPInstanceUID)) ?? '';
  const parts: Buffer[] = [];
  if (options.meta !== false) parts.push(encodeFileMeta(sopClass, sopInstance, declaredTs));
  parts.push(encodeDataset(before, enc));
  if (options.planted) parts.push(encodeDataset(options.planted, enc));
  parts.push(encodeDataset(after, enc));
  if (src.pixelData && src.pixelValue) parts.push(encodePixelDataHeader(src.pixelData.tag, src.pixelData.vr, src.pixelData.length, enc), src.pixelValue);
  if (src.trailing.size) parts.push(encodeDataset(src.trailing, enc));
  return Buffer.concat(parts);
}

/** Encapsulation as PS3.5 A.4 has it: undefined length, a basic offset table item, then fragments. */
function fragmentsOf(parsed: ParsedDicom): number {
  const v = parsed.pixelValue ?? Buffer.alloc(0);
  let items = 0;
  for (let o = 0; o + 8 <= v.length; ) {
    const tag = ((v.readUInt16LE(o) << 16) | v.readUInt16LE(o + 2)) >>> 0;
    if (tag !== Tags.Item) break;
    items++;
    o += 8 + v.readUInt32LE(o + 4);
  }
  return items - 1;
}

describe('given the real JPEG fixture (ms-anonymizer I341, JPEG Extended, CT) with a second file meta group planted in its data set', () => {
  const fixture = readFileSync(join(FIXTURES, 'ms-anonymizer/samples__I341.dcm'));
  let source: ParsedDicom;
  beforeAll(async () => {
    source = await parseDicomBuffer(fixture);
    expect(source.transferSyntaxUid).toBe(JPEG_EXTENDED);
  });

  test('when the second group follows the first, then the output keeps JPEG Extended, holds no meta element in its data set, and its pixel data is encapsulated', async () => {
    const planted = rebuild(source, JPEG_EXTENDED, { planted: secondMetaGroup(TransferSyntax.ExplicitVRLittleEndian), splitAt: 0 });
    const { parsed, outputTs } = await deidentify(planted);
    expect(outputTs).toBe(JPEG_EXTENDED);
    expect(parsed.transferSyntaxUid).toBe(JPEG_EXTENDED);
    expect(asciiValue(parsed.meta.get(Tags.TransferSyntaxUID))).toBe(JPEG_EXTENDED);
    expect([...parsed.dataset.keys()].filter((t) => t >>> 16 === 0x0002)).toEqual([]);
    expect(parsed.pixelData?.length).toBeUndefined();
    expect(fragmentsOf(parsed)).toBeGreaterThanOrEqual(1);
    expect(parsed.pixelValue?.equals(source.pixelValue ?? Buffer.alloc(0))).toBe(true);
  });

  test('when the second group sits in the middle of the data set, then it is not written and the output keeps JPEG Extended', async () => {
    const planted = rebuild(source, JPEG_EXTENDED, { planted: secondMetaGroup(TransferSyntax.ExplicitVRLittleEndian), splitAt: 0x00100000 });
    const { parsed } = await deidentify(planted);
    expect(parsed.transferSyntaxUid).toBe(JPEG_EXTENDED);
    expect([...parsed.dataset.keys()].filter((t) => t >>> 16 === 0x0002)).toEqual([]);
    expect(parsed.pixelData?.length).toBeUndefined();
  });

  test('when the meta group says Explicit VR Little Endian (native) over its JPEG fragments, then DICOM_TRANSFER_SYNTAX_MISMATCH and no output', async () => {
    expect(await failureCode(rebuild(source, TransferSyntax.ExplicitVRLittleEndian))).toBe('DICOM_TRANSFER_SYNTAX_MISMATCH');
  });

  test('when the file has no meta group at all (a bare data set, read as Explicit VR Little Endian), then DICOM_TRANSFER_SYNTAX_MISMATCH rather than a native label on JPEG fragments', async () => {
    expect(await failureCode(rebuild(source, JPEG_EXTENDED, { meta: false }))).toBe('DICOM_TRANSFER_SYNTAX_MISMATCH');
  });

  test('when the encapsulated pixel data holds a basic offset table item and no fragment, then DICOM_TRANSFER_SYNTAX_MISMATCH while the output streams', async () => {
    const emptyBot = Buffer.alloc(16);
    emptyBot.writeUInt16LE(0xfffe, 0);
    emptyBot.writeUInt16LE(0xe000, 2);
    emptyBot.writeUInt16LE(0xfffe, 8);
    emptyBot.writeUInt16LE(0xe0dd, 10);
    const broken = rebuild({ ...source, pixelValue: emptyBot, trailing: new Map() }, JPEG_EXTENDED);
    expect(await failureCode(broken)).toBe('DICOM_TRANSFER_SYNTAX_MISMATCH');
  });
});

describe('given the real native fixture (pydicom MR_small, Explicit VR Little Endian)', () => {
  const fixture = readFileSync(join(FIXTURES, 'pydicom-deb/test_files__MR_small.dcm'));
  let source: ParsedDicom;
  beforeAll(async () => {
    source = await parseDicomBuffer(fixture);
    expect(source.pixelData?.length).toBeGreaterThan(0);
  });

  test('when its meta says JPEG Baseline over native pixel data, then DICOM_TRANSFER_SYNTAX_MISMATCH and no output', async () => {
    expect(await failureCode(rebuild(source, JPEG_BASELINE))).toBe('DICOM_TRANSFER_SYNTAX_MISMATCH');
  });

  test('when its meta says Explicit VR Little Endian over a data set encoded implicit VR, then it fails as a file (the declared syntax cannot read it) and nothing is written', async () => {
    const implicit = rebuild(source, TransferSyntax.ExplicitVRLittleEndian, { enc: encodingOf(TransferSyntax.ImplicitVRLittleEndian) });
    // Read explicit, the first implicit length looks like a huge value: the parse's own code wins.
    expect(['DICOM_TRANSFER_SYNTAX_MISMATCH', 'DICOM_ELEMENT_TOO_LARGE', 'DICOM_MALFORMED']).toContain(await failureCode(implicit));
  });

  test('when untouched, then the output is Explicit VR Little Endian with pixel data of the same defined length', async () => {
    const { parsed } = await deidentify(fixture);
    expect(parsed.transferSyntaxUid).toBe(TransferSyntax.ExplicitVRLittleEndian);
    expect(parsed.pixelData?.length).toBe(source.pixelData?.length);
  });
});

describe('given the real deflated fixture (dicomParser report_dfl)', () => {
  test('when de-identified, then it is written inflated, labelled Explicit VR Little Endian, and parses to its end', async () => {
    const { parsed } = await deidentify(readFileSync(join(FIXTURES, 'dicomParser/deflate__report_dfl')));
    expect(parsed.transferSyntaxUid).toBe(TransferSyntax.ExplicitVRLittleEndian);
    expect(parsed.deflated).toBe(false);
    expect(parsed.dataset.get(Tags.SOPInstanceUID)).toBeDefined();
  });
});
