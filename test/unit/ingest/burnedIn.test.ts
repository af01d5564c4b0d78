import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { bufferReader } from '../../../shared/dicom/byteReader';
import { asciiValue, DicomDataset, encodeAsciiValue, TransferSyntax } from '../../../shared/dicom/dataset';
import { loadProfile, Profile } from '../../../shared/dicom/deid/profile';
import researchDefault from '../../../shared/dicom/deid/profiles/research-default.json';
import { parseDicomBuffer } from '../../../shared/dicom/parser';
import { encodeDataset, encodeFileMeta, encodePixelDataHeader } from '../../../shared/dicom/writer';
import { isPipelineError } from '../../../shared/errors';
import { BurnedInPolicy, decideBurnedIn } from '../../../shared/ingest/burnedIn';
import { prepareDeidentifiedInstance } from '../../../shared/ingest/deidentifyInstance';

const FIXTURES = join(__dirname, '..', '..', 'fixtures', 'dicom');
const key = Buffer.from('burned-in test key, 32 bytes ....');
const BURNED_IN_ANNOTATION = 0x00280301;

type Regions = { manufacturer: string; model?: string; rows?: number; columns?: number; boxes: number[][] }[];

function profileWith(regions: Regions | undefined, cleanPixelData = true): Profile {
  return loadProfile({
    ...researchDefault,
    name: 'burned-in-test',
    options: [...researchDefault.options, ...(cleanPixelData ? ['cleanPixelData'] : [])],
    ...(regions ? { burnedIn: { regions } } : {}),
  });
}

async function deidentify(source: Buffer, profile: Profile, burnedIn: BurnedInPolicy = { mode: 'quarantine' }) {
  const prepared = await prepareDeidentifiedInstance(bufferReader(source), {
    deid: { profile, key, keyId: 'test' },
    maxHeaderBytes: 1 << 24,
    totalSize: source.length,
    burnedIn,
  });
  const parts: Uint8Array[] = [];
  for await (const c of prepared.output()) parts.push(c);
  const bytes = Buffer.concat(parts);
  return { prepared, bytes, parsed: await parseDicomBuffer(bytes) };
}

async function quarantineReason(source: Buffer, profile: Profile): Promise<string> {
  try {
    await deidentify(source, profile);
  } catch (e) {
    if (isPipelineError(e, 'DEID_BURNED_IN_ANNOTATION')) return e.message;
    throw e;
  }
  throw new Error('expected the instance to be quarantined');
}

function inBoxes(boxes: number[][], x: number, y: number): boolean {
  return boxes.some(([bx = 0, by = 0, w = 0, h = 0]) => x >= bx && x < bx + w && y >= by && y < by + h);
}

describe('given the real ultrasound fixture (Philips EPIQ 5G, 1024x768 8-bit, BurnedInAnnotation YES)', () => {
  const source = readFileSync(join(FIXTURES, 'deid/ultrasounds__GREYSCALE_IMAGE.dcm'));
  const boxes = [[0, 0, 1024, 60], [700, 700, 400, 100]];
  const regions: Regions = [{ manufacturer: 'Philips Medical Systems', model: 'EPIQ 5G', boxes }];

  it('with Clean Pixel Data and a region set for the device, then exactly the boxes are zero, BurnedInAnnotation is NO and the count is recorded', async () => {
    const original = await parseDicomBuffer(source);
    const { prepared, parsed } = await deidentify(source, profileWith(regions));
    expect(prepared.pixelsCleaned).toEqual({ boxes: 2, frames: 1 });
    expect(asciiValue(parsed.dataset.get(BURNED_IN_ANNOTATION))).toBe('NO');
    const before = original.pixelValue as Buffer;
    const after = parsed.pixelValue as Buffer;
    expect(after.length).toBe(before.length);
    let zeroed = 0;
    for (let y = 0; y < 768; y++) {
      for (let x = 0; x < 1024; x++) {
        const i = y * 1024 + x;
        if (inBoxes(boxes, x, y)) {
          if (after[i] !== 0) throw new Error(`pixel (${x},${y}) inside a box is ${after[i]}`);
          zeroed++;
        } else if (after[i] !== before[i]) {
          throw new Error(`pixel (${x},${y}) outside the boxes changed`);
        }
      }
    }
    expect(zeroed).toBe(1024 * 60 + 324 * 68);
    // The source had text under the top box: the test would prove nothing on blank pixels.
    expect(before.subarray(0, 1024 * 60).some((b) => b !== 0)).toBe(true);
  });

  it('with Clean Pixel Data but no region set for this model, then it is quarantined', async () => {
    const reason = await quarantineReason(source, profileWith([{ manufacturer: 'Philips Medical Systems', model: 'Other', boxes }]));
    expect(reason).toMatch(/BurnedInAnnotation is YES.*no burned-in region configured/);
  });

  it('with regions but without the Clean Pixel Data option, then it is quarantined', async () => {
    expect(await quarantineReason(source, profileWith(regions, false))).toMatch(/no Clean Pixel Data option/);
  });

  it('under the allow policy, then the pixel data and BurnedInAnnotation are unchanged and nothing is recorded', async () => {
    const original = await parseDicomBuffer(source);
    const { prepared, parsed } = await deidentify(source, profileWith(regions), { mode: 'allow' });
    expect(prepared.pixelsCleaned).toBeUndefined();
    expect(asciiValue(parsed.dataset.get(BURNED_IN_ANNOTATION))).toBe('YES');
    expect((parsed.pixelValue as Buffer).equals(original.pixelValue as Buffer)).toBe(true);
  });
});

describe('given the real big-endian ultrasound fixture (GE LOGIQ 700, 80x60 RGB, planar)', () => {
  const source = readFileSync(join(FIXTURES, 'pydicom-deb/test_files__ExplVR_BigEnd.dcm'));

  it('with a region set, then every colour plane is zero under the box and the rest is unchanged', async () => {
    const original = await parseDicomBuffer(source);
    const box = [10, 5, 30, 7];
    const { prepared, parsed } = await deidentify(source, profileWith([{ manufacturer: 'G.E. Medical Systems', rows: 60, columns: 80, boxes: [box] }]));
    expect(prepared.pixelsCleaned).toEqual({ boxes: 1, frames: 1 });
    const before = original.pixelValue as Buffer;
    const after = parsed.pixelValue as Buffer;
    for (let plane = 0; plane < 3; plane++) {
      for (let y = 0; y < 60; y++) {
        for (let x = 0; x < 80; x++) {
          const i = plane * 4800 + y * 80 + x;
          expect([plane, x, y, after[i]]).toEqual([plane, x, y, inBoxes([box], x, y) ? 0 : before[i]]);
        }
      }
    }
  });
});

describe('given encapsulated (JPEG) secondary capture with a region set for its device', () => {
  it('then it is quarantined: compressed pixels cannot be cleaned byte by byte', async () => {
    const source = readFileSync(join(FIXTURES, 'fo-dicom/JPEGwithIcon.dcm'));
    const reason = await quarantineReason(source, profileWith([{ manufacturer: 'Distributed Medical', boxes: [[0, 0, 10, 10]] }]));
    expect(reason).toMatch(/encapsulated/);
  });
});

describe('given a synthetic 16-bit multi-frame ultrasound file', () => {
  const rows = 6;
  const columns = 5;
  const frames = 3;
  function build(): Buffer {
    const ds: DicomDataset = new Map();
    const text = (tag: number, vr: string, v: string) => ds.set(tag, { tag, vr, value: encodeAsciiValue(v, vr) });
    const us = (tag: number, v: number) => ds.set(tag, { tag, vr: 'US', value: Buffer.from([v & 0xff, v >> 8]) });
    text(0x00080016, 'UI', '1.2.840.10008.5.1.4.1.1.3.1');
    text(0x00080018, 'UI', '1.2.826.0.1.3680043.99.7.3');
    text(0x00080060, 'CS', 'US');
    text(0x00080070, 'LO', 'ACME');
    text(0x00081090, 'LO', 'X1');
    text(0x00100010, 'PN', 'Doe^Jane');
    text(0x00100020, 'LO', 'MRN123456');
    text(0x0020000d, 'UI', '1.2.826.0.1.3680043.99.7');
    text(0x0020000e, 'UI', '1.2.826.0.1.3680043.99.7.2');
    us(0x00280002, 1);
    text(0x00280004, 'CS', 'MONOCHROME2');
    text(0x00280008, 'IS', String(frames));
    us(0x00280010, rows);
    us(0x00280011, columns);
    us(0x00280100, 16);
    us(0x00280101, 16);
    us(0x00280102, 15);
    us(0x00280103, 0);
    const pixels = Buffer.alloc(rows * columns * frames * 2);
    for (let i = 0; i < pixels.length / 2; i++) pixels.writeUInt16LE(1000 + i, i * 2);
    const enc = { explicitVR: true, littleEndian: true };
    return Buffer.concat([
      encodeFileMeta('1.2.840.10008.5.1.4.1.1.3.1', '1.2.826.0.1.3680043.99.7.3', TransferSyntax.ExplicitVRLittleEndian),
      encodeDataset(ds, enc),
      encodePixelDataHeader(0x7fe00010, 'OW', pixels.length, enc),
      pixels,
    ]);
  }

  it('then the box is zero in every frame, other pixels keep their values, and BurnedInAnnotation (absent before) is NO', async () => {
    const box = [1, 2, 3, 2];
    const { prepared, parsed } = await deidentify(build(), profileWith([{ manufacturer: 'acme', model: 'x1', boxes: [box] }]));
    expect(prepared.pixelsCleaned).toEqual({ boxes: 1, frames: 3 });
    expect(asciiValue(parsed.dataset.get(BURNED_IN_ANNOTATION))).toBe('NO');
    const px = parsed.pixelValue as Buffer;
    for (let f = 0; f < frames; f++) {
      for (let y = 0; y < rows; y++) {
        for (let x = 0; x < columns; x++) {
          const i = f * rows * columns + y * columns + x;
          expect([f, x, y, px.readUInt16LE(i * 2)]).toEqual([f, x, y, inBoxes([box], x, y) ? 0 : 1000 + i]);
        }
      }
    }
  });
});

describe('decideBurnedIn', () => {
  const input = (flag?: string) => {
    const ds: DicomDataset = new Map();
    if (flag) ds.set(BURNED_IN_ANNOTATION, { tag: BURNED_IN_ANNOTATION, vr: 'CS', value: encodeAsciiValue(flag, 'CS') });
    return { dataset: ds, littleEndian: true, pixelData: { tag: 0x7fe00010, vr: 'OW', length: 0 }, sopClassUid: '1.2.840.10008.5.1.4.1.1.6.1', modality: 'US' };
  };

  it('given BurnedInAnnotation NO on an ultrasound, then it passes', () => {
    expect(decideBurnedIn(input('NO'), { mode: 'quarantine' }, profileWith(undefined))).toEqual({ action: 'pass' });
  });

  it('given an ultrasound without BurnedInAnnotation and no regions at all, then quarantine naming the category only', () => {
    const d = decideBurnedIn(input(), { mode: 'quarantine' }, profileWith(undefined));
    expect(d).toEqual({ action: 'quarantine', reason: expect.stringMatching(/^pixel data may hold burned-in text \(ultrasound without BurnedInAnnotation\); held for review: no burned-in region/) });
  });

  it('given the allow policy, then it passes whatever the flag', () => {
    expect(decideBurnedIn(input('YES'), { mode: 'allow' }, profileWith(undefined))).toEqual({ action: 'pass' });
  });
});
