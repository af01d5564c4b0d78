import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { deflateRawSync } from 'node:zlib';

import { bufferReader,ByteReader } from '../../../shared/dicom/byteReader';
import { asciiValue, DicomDataset, encodeAsciiValue, TransferSyntax } from '../../../shared/dicom/dataset';
import { parseDicomBuffer, pixelDataChunks, readHeader, readTrailing } from '../../../shared/dicom/parser';
import { Tags } from '../../../shared/dicom/tags';
import { encodeDataset, encodeFileMeta, encodePixelDataHeader } from '../../../shared/dicom/writer';
import { ErrorCodes } from '../../../shared/errors';

const FIXTURES = join(__dirname, '..', '..', 'fixtures', 'dicom');

function allFixtures(dir = FIXTURES): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return allFixtures(p);
    return /\.(tsv|md)$/.test(name) ? [] : [p];
  });
}

const BROKEN: Record<string, string> = {
  'pydicom-deb/test_files__MR_truncated.dcm': ErrorCodes.DICOM_TRUNCATED,
  'pydicom-deb/test_files__SC_rgb_jpeg.dcm': ErrorCodes.DICOM_ELEMENT_TOO_LARGE,
  'pydicom-deb/test_files__no_meta.dcm': ErrorCodes.DICOM_NOT_DICOM,
};

/** Compares two data sets element by element (values as bytes, sequences recursively). */
function sameDataset(a: DicomDataset, b: DicomDataset, path = ''): string[] {
  const diffs: string[] = [];
  const tags = new Set([...a.keys(), ...b.keys()].filter((t) => (t & 0xffff) !== 0));
  for (const t of tags) {
    const x = a.get(t);
    const y = b.get(t);
    const where = `${path}${t.toString(16)}`;
    if (!x || !y) diffs.push(`${where} missing`);
    else if (x.items || y.items) {
      if ((x.items?.length ?? -1) !== (y.items?.length ?? -1)) diffs.push(`${where} item count`);
      else x.items!.forEach((item, i) => diffs.push(...sameDataset(item, y.items![i]!, `${where}[${i}].`)));
    } else {
      const xv = Buffer.from(x.value ?? []);
      const yv = Buffer.from(y.value ?? []);
      // The writer pads odd values to even length; that is the only change allowed.
      const pad = yv.length === xv.length + 1 && yv.subarray(0, xv.length).equals(xv);
      if (!xv.equals(yv) && !pad) diffs.push(`${where} value`);
    }
  }
  return diffs;
}

describe('readHeader / parseDicomBuffer', () => {
  const files = allFixtures();

  it('has fixtures to read', () => {
    expect(files.length).toBeGreaterThan(100);
  });

  it.each(files.map((f) => [relative(FIXTURES, f)]))('given %s, then it parses or fails with its expected code, and round-trips through the writer', async (rel) => {
    const buf = readFileSync(join(FIXTURES, rel));
    const expected = BROKEN[rel];
    if (expected) {
      await expect(parseDicomBuffer(buf)).rejects.toMatchObject({ code: expected });
      return;
    }
    const p = await parseDicomBuffer(buf);
    const enc = p.deflated ? { explicitVR: true, littleEndian: true } : p.encoding;
    const ts = p.deflated ? TransferSyntax.ExplicitVRLittleEndian : p.transferSyntaxUid;
    const parts = [encodeFileMeta(asciiValue(p.dataset.get(Tags.SOPClassUID)) ?? '1.2', asciiValue(p.dataset.get(Tags.SOPInstanceUID)) ?? '1.2', ts), encodeDataset(p.dataset, enc)];
    if (p.pixelData) parts.push(encodePixelDataHeader(p.pixelData.tag, p.pixelData.vr, p.pixelData.length, enc), p.pixelValue!);
    parts.push(encodeDataset(p.trailing, enc));
    const again = await parseDicomBuffer(Buffer.concat(parts));
    expect(sameDataset(p.dataset, again.dataset)).toEqual([]);
    expect(again.pixelValue?.equals(p.pixelValue ?? Buffer.alloc(0)) ?? !p.pixelData).toBe(true);
    expect(again.transferSyntaxUid).toBe(ts);
  });

  it('given a file without preamble (a bare data set), then it is read with the encoding it starts with', async () => {
    const p = await parseDicomBuffer(readFileSync(join(FIXTURES, 'pydicom-deb/test_files__rtstruct.dcm')));
    expect(p.part10).toBe(false);
    expect(p.transferSyntaxUid).toBe(TransferSyntax.ImplicitVRLittleEndian);
    expect(asciiValue(p.dataset.get(0x00080060))).toBe('RTSTRUCT');
  });

  it('given a deflated file, then the data set is inflated while streaming', async () => {
    const p = await parseDicomBuffer(readFileSync(join(FIXTURES, 'pydicom-deb/test_files__image_dfl.dcm')));
    expect(p.deflated).toBe(true);
    expect(asciiValue(p.dataset.get(0x00080060))).toBe('OT');
    expect(p.pixelValue?.length).toBeGreaterThan(0);
  });

  it('given big-endian data, then binary values stay big-endian and text reads the same', async () => {
    const le = await parseDicomBuffer(readFileSync(join(FIXTURES, 'pydicom-deb/test_files__MR_small.dcm')));
    const be = await parseDicomBuffer(readFileSync(join(FIXTURES, 'pydicom-deb/test_files__MR_small_bigendian.dcm')));
    expect(be.encoding.littleEndian).toBe(false);
    expect(asciiValue(be.dataset.get(0x00100010))).toBe(asciiValue(le.dataset.get(0x00100010)));
    expect(Buffer.from(be.dataset.get(0x00280010)!.value!).readUInt16BE(0)).toBe(Buffer.from(le.dataset.get(0x00280010)!.value!).readUInt16LE(0));
  });

  it('given a 4 KB file that declares a 1.3 GB element, then it fails before allocating it', async () => {
    const buf = readFileSync(join(FIXTURES, 'pydicom-deb/test_files__SC_rgb_jpeg.dcm'));
    const before = process.memoryUsage().arrayBuffers;
    await expect(parseDicomBuffer(buf)).rejects.toMatchObject({ code: ErrorCodes.DICOM_ELEMENT_TOO_LARGE });
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(50 * 1024 * 1024);
  });

  it('given a header larger than the limit, then DICOM_HEADER_TOO_LARGE', async () => {
    const buf = readFileSync(join(FIXTURES, 'dcmjs/test__sample-dicom.dcm'));
    await expect(readHeader(bufferReader(buf), { maxHeaderBytes: 1024, totalSize: buf.length })).rejects.toMatchObject({ code: ErrorCodes.DICOM_HEADER_TOO_LARGE });
  });

  it('given a deflated stream that is corrupt, then DICOM_MALFORMED', async () => {
    const good = readFileSync(join(FIXTURES, 'pydicom-deb/test_files__image_dfl.dcm'));
    const metaEnd = 132 + 12 + good.readUInt32LE(140);
    const bad = Buffer.concat([good.subarray(0, metaEnd), Buffer.from('this is not deflate data at all, 0123456789'.repeat(4))]);
    await expect(parseDicomBuffer(bad)).rejects.toMatchObject({ code: ErrorCodes.DICOM_MALFORMED });
  });

  it('given a large file read as a stream, then memory holds the header and one chunk, not the pixel data', async () => {
    // 64 MB of pixel data behind a small header, delivered in 1 MB chunks.
    const ds: DicomDataset = new Map();
    const put = (tag: number, vr: string, text: string) => ds.set(tag, { tag, vr, value: encodeAsciiValue(text, vr) });
    put(Tags.SOPClassUID, 'UI', '1.2.840.10008.5.1.4.1.1.7');
    put(Tags.SOPInstanceUID, 'UI', '1.2.3.4');
    const enc = { explicitVR: true, littleEndian: true };
    const pixelBytes = 64 * 1024 * 1024;
    const head = Buffer.concat([encodeFileMeta('1.2.840.10008.5.1.4.1.1.7', '1.2.3.4', TransferSyntax.ExplicitVRLittleEndian), encodeDataset(ds, enc), encodePixelDataHeader(Tags.PixelData, 'OB', pixelBytes, enc)]);
    const chunk = Buffer.alloc(1024 * 1024, 7);
    async function* source() {
      yield head;
      for (let i = 0; i < pixelBytes / chunk.length; i++) yield chunk;
      yield encodeDataset(new Map([[0xfffcfffc, { tag: 0xfffcfffc, vr: 'OB', value: Buffer.alloc(8) }]]), enc);
    }
    const reader = new ByteReader(source(), { sha256: true });
    const header = await readHeader(reader, { maxHeaderBytes: 1 << 20 });
    let maxBuffered = 0;
    let total = 0;
    for await (const c of pixelDataChunks(header)) {
      total += c.length;
      maxBuffered = Math.max(maxBuffered, reader.bufferedBytes);
    }
    const trailing = await readTrailing(header.body, header.encoding, { maxHeaderBytes: 1 << 20 });
    expect(total).toBe(pixelBytes);
    expect(maxBuffered).toBeLessThanOrEqual(2 * chunk.length);
    expect(trailing.has(0xfffcfffc)).toBe(true);
    expect(await reader.sha256()).toMatch(/^[0-9a-f]{64}$/);
  });

  it('given a source that reuses its chunk buffers, then the parsed header keeps its values (nothing views the chunks)', async () => {
    const ds: DicomDataset = new Map();
    const put = (tag: number, vr: string, text: string) => ds.set(tag, { tag, vr, value: encodeAsciiValue(text, vr) });
    put(Tags.SOPClassUID, 'UI', '1.2.840.10008.5.1.4.1.1.7');
    put(Tags.SOPInstanceUID, 'UI', '1.2.3.4');
    put(0x00100010, 'PN', 'Reuse^Buffer');
    ds.set(0x00081140, { tag: 0x00081140, vr: 'SQ', items: [new Map([[0x00081155, { tag: 0x00081155, vr: 'UI', value: encodeAsciiValue('1.2.3.5', 'UI') }]])] });
    const enc = { explicitVR: true, littleEndian: true };
    const file = Buffer.concat([encodeFileMeta('1.2.840.10008.5.1.4.1.1.7', '1.2.3.4', TransferSyntax.ExplicitVRLittleEndian), encodeDataset(ds, enc), encodePixelDataHeader(Tags.PixelData, 'OB', 16, enc), Buffer.alloc(16, 1)]);
    // The header inside one chunk (several chunks would be joined into a new buffer first), as
    // a pooled source hands out a buffer that it refills once the reader is past it.
    const handedOut: Buffer[] = [];
    async function* source() {
      for (let at = 0; at < file.length; at += 4096) {
        const chunk = Buffer.from(file.subarray(at, at + 4096));
        handedOut.push(chunk);
        yield chunk;
      }
    }
    const header = await readHeader(new ByteReader(source()), { maxHeaderBytes: 1 << 20 });
    for await (const chunk of pixelDataChunks(header)) void chunk;
    expect(handedOut).toHaveLength(1);
    for (const chunk of handedOut) chunk.fill(0x5a);
    expect(sameDataset(header.dataset, (await parseDicomBuffer(file)).dataset)).toEqual([]);
    expect(asciiValue(header.dataset.get(0x00100010))).toBe('Reuse^Buffer');
  });

  it('given a deflate-compressed body built here, then its elements are read back', async () => {
    const ds: DicomDataset = new Map();
    ds.set(0x00100010, { tag: 0x00100010, vr: 'PN', value: encodeAsciiValue('Test^Deflate', 'PN') });
    const body = deflateRawSync(encodeDataset(ds, { explicitVR: true, littleEndian: true }));
    const file = Buffer.concat([encodeFileMeta('1.2', '1.2.3', TransferSyntax.DeflatedExplicitVRLittleEndian), body]);
    const p = await parseDicomBuffer(file);
    expect(asciiValue(p.dataset.get(0x00100010))).toBe('Test^Deflate');
  });
});
