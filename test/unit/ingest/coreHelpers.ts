/**
 * Test helpers shared by the ingestion tests that run files through the real core: a file
 * written back from a parsed fixture with its data set changed, and one de-identification with
 * the output consumed, as the ingestion does.
 */
import { bufferReader } from '../../../shared/dicom/byteReader';
import { asciiValue, DicomDataset } from '../../../shared/dicom/dataset';
import type { Profile } from '../../../shared/dicom/deid/profile';
import type { ParsedDicom } from '../../../shared/dicom/parser';
import { Tags } from '../../../shared/dicom/tags';
import { encodeDataset, encodeFileMeta, encodePixelDataHeader } from '../../../shared/dicom/writer';
import { prepareDeidentifiedInstance,PreparedInstance } from '../../../shared/ingest/deidentifyInstance';

/** The file of `src` with `ds` as its data set (meta from `ds`'s SOP class and instance unless given), pixel data as it was. */
export function encodeWithDataset(src: ParsedDicom, ds: DicomDataset, sopInstanceUid = asciiValue(ds.get(Tags.SOPInstanceUID)) ?? ''): Buffer {
  const sopClass = asciiValue(ds.get(Tags.SOPClassUID)) ?? '';
  const parts = [encodeFileMeta(sopClass, sopInstanceUid, src.transferSyntaxUid), encodeDataset(ds, src.encoding)];
  if (src.pixelData && src.pixelValue) parts.push(encodePixelDataHeader(src.pixelData.tag, src.pixelData.vr, src.pixelData.length, src.encoding), src.pixelValue);
  return Buffer.concat(parts);
}

/** De-identifies `source` through the core under `profile`, reading the whole output. */
export async function deidentifyThroughCore(source: Buffer, profile: Profile, key: Buffer, keyId = 'test'): Promise<{ prepared: PreparedInstance; bytes: Buffer }> {
  const prepared = await prepareDeidentifiedInstance(bufferReader(source), {
    deid: { profile, key, keyId },
    maxHeaderBytes: 1 << 24,
    totalSize: source.length,
    burnedIn: { mode: 'quarantine' },
  });
  const parts: Uint8Array[] = [];
  for await (const c of prepared.output()) parts.push(c);
  return { prepared, bytes: Buffer.concat(parts) };
}
