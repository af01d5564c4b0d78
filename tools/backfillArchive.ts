/**
 * An existing archive for the backfill's test and measurement: `count` small generated CT
 * slices (8x8 pixels, about 1.5 KB each, 100 per series and study) uploaded straight into
 * Azurite's landing container with no stack running, so that no event announces them: only a
 * backfill can make them ingested. Synthetic patients only.
 */
import { BlobServiceClient } from '@azure/storage-blob';

import { benchUid, CT_IMAGE_STORAGE } from '../bench/generate';
import { azuriteConnectionString } from '../local/emulators';
import { startAzurite } from '../local/services/azurite';
import { type DicomDataset, encodeAsciiValue, type Encoding, TransferSyntax } from '../shared/dicom/dataset';
import { Tags } from '../shared/dicom/tags';
import { encodeDataset, encodeFileMeta, encodePixelDataHeader } from '../shared/dicom/writer';

const ENC: Encoding = { explicitVR: true, littleEndian: true };
const SIDE = 8;
const PER_SERIES = 100;

function text(tag: number, vr: string, value: string) {
  return { tag, vr, value: encodeAsciiValue(value, vr) };
}
function us(tag: number, value: number) {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(value);
  return { tag, vr: 'US', value: b };
}

/** One small CT slice; `index` picks the study (index / 100) and the instance in it. */
export function smallSlice(seed: number, index: number): Buffer {
  const study = Math.floor(index / PER_SERIES);
  const instance = (index % PER_SERIES) + 1;
  const sop = benchUid(seed, `small:${index}`);
  const ds: DicomDataset = new Map();
  for (const e of [
    text(Tags.SpecificCharacterSet, 'CS', 'ISO_IR 100'),
    text(Tags.SOPClassUID, 'UI', CT_IMAGE_STORAGE),
    text(Tags.SOPInstanceUID, 'UI', sop),
    text(Tags.StudyDate, 'DA', '20240315'),
    text(Tags.StudyTime, 'TM', '083015'),
    text(Tags.AccessionNumber, 'SH', `BF${seed}${study}`),
    text(Tags.Modality, 'CS', 'CT'),
    text(Tags.PatientName, 'PN', `BACKFILL^PATIENT${study}`),
    text(Tags.PatientID, 'LO', `BFMRN${seed}${study}`),
    text(Tags.PatientBirthDate, 'DA', '19600101'),
    text(Tags.PatientSex, 'CS', study % 2 ? 'F' : 'M'),
    text(Tags.StudyInstanceUID, 'UI', benchUid(seed, `small-study:${study}`)),
    text(Tags.SeriesInstanceUID, 'UI', benchUid(seed, `small-series:${study}`)),
    text(Tags.StudyID, 'SH', String(study)),
    text(Tags.SeriesNumber, 'IS', '1'),
    text(Tags.InstanceNumber, 'IS', String(instance)),
    us(Tags.SamplesPerPixel, 1),
    text(Tags.PhotometricInterpretation, 'CS', 'MONOCHROME2'),
    us(Tags.Rows, SIDE),
    us(Tags.Columns, SIDE),
    us(Tags.BitsAllocated, 16),
    us(Tags.BitsStored, 12),
    us(Tags.HighBit, 11),
    us(Tags.PixelRepresentation, 0),
  ]) ds.set(e.tag, e);
  const pixels = Buffer.alloc(SIDE * SIDE * 2, index & 0xff);
  return Buffer.concat([encodeFileMeta(CT_IMAGE_STORAGE, sop, TransferSyntax.ExplicitVRLittleEndian), encodeDataset(ds, ENC), encodePixelDataHeader(Tags.PixelData, 'OW', pixels.length, ENC), pixels]);
}

/** Blob name of file `index`: study folders, as an archive's tree. */
export function smallSliceName(index: number): string {
  return `backfill/study${String(Math.floor(index / PER_SERIES)).padStart(5, '0')}/${String(index % PER_SERIES).padStart(3, '0')}.dcm`;
}

export interface SeedOptions {
  container: string;
  count: number;
  seed: number;
  concurrency?: number;
  onProgress?: (done: number) => void;
}

/**
 * Starts Azurite alone on `location`, uploads the files (`concurrency` at once), stops it.
 * Resolves with the bytes written.
 */
export async function seedArchive(options: SeedOptions & { location: string }): Promise<number> {
  const azurite = await startAzurite({ blobPort: 0, queuePort: 0, persistence: { location: options.location } });
  try {
    return await seedInto(BlobServiceClient.fromConnectionString(azuriteConnectionString(azurite.blobPort, azurite.queuePort)), options);
  } finally {
    await azurite.stop();
  }
}

/** Uploads the files into a running Azurite (`concurrency` at once). Resolves with the bytes written. */
export async function seedInto(service: BlobServiceClient, options: SeedOptions): Promise<number> {
  const container = service.getContainerClient(options.container);
  await container.createIfNotExists();
  let bytes = 0;
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < options.count) {
      const i = next++;
      const body = smallSlice(options.seed, i);
      bytes += body.length;
      await container.getBlockBlobClient(smallSliceName(i)).upload(body, body.length);
      done++;
      if (done % 1000 === 0) options.onProgress?.(done);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency ?? 16 }, worker));
  return bytes;
}
