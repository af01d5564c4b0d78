/**
 * The header of a research copy, read from the copy itself in ranged reads: the catalog keeps
 * only text and numeric attributes, the copy has the whole de-identified data set. Only the
 * header's bytes are read (a first range, doubled while the parse needs more), never the pixel
 * data, so a 2 GB copy costs what a 2 MB one does.
 */
import { ByteReader } from '../dicom/byteReader';
import type { DicomDataset, DicomElement } from '../dicom/dataset';
import { tagToHex } from '../dicom/dictionary';
import type { HeaderLimits } from '../dicom/limits';
import { readHeader } from '../dicom/parser';
import { ErrorCodes, PipelineError } from '../errors';
import type { CopyReadOptions, ResearchStore } from '../storage/stores';
import type { ResearchInstance } from './researchInstances';

/** The first range read of a copy: most headers fit in it. */
const FIRST_RANGE_BYTES = 64 * 1024;
/** Ranges double up to this while a large header is read. */
const MAX_RANGE_BYTES = 8 * 1024 * 1024;

export type ResearchReader = Pick<ResearchStore, 'readRange'>;

/** The parsed header of a research copy and where its top-level pixel data lies. */
export interface CopyHeader {
  transferSyntaxUid: string;
  littleEndian: boolean;
  dataset: DicomDataset;
  /** The top-level pixel data element: its tag, VR, value length (undefined: encapsulated) and where its value starts in the copy. */
  pixelData?: { tag: number; vr: string; length: number | undefined; valueOffset: number };
}

/**
 * A copy's bytes from `offset`, as consecutive ranged reads of growing size, each requested
 * only when the reader wants more: the reading stops where the parse does. A range that
 * comes back short is the copy's end.
 */
export async function* rangedReads(research: ResearchReader, blob: string, offset = 0, options: CopyReadOptions = {}): AsyncGenerator<Uint8Array> {
  for (let o = offset, step = FIRST_RANGE_BYTES; ; step = Math.min(step * 2, MAX_RANGE_BYTES)) {
    let got = 0;
    for await (const chunk of await research.readRange(blob, o, step, options)) {
      got += chunk.length;
      yield chunk;
    }
    if (got < step) return;
    o += step;
  }
}

/**
 * Reads and parses the header of a research copy. Throws NOT_FOUND when the copy is gone,
 * SERVICE_* when storage fails, the parser's DICOM_* codes when the copy does not parse (it
 * did at ingestion: a 500). Idempotent: reads only.
 */
export async function readCopyHeader(research: ResearchReader, instance: Pick<ResearchInstance, 'researchBlob'> & { size?: number }, limits: HeaderLimits, options: { abortSignal?: AbortSignal } = {}): Promise<CopyHeader> {
  const reader = new ByteReader(rangedReads(research, instance.researchBlob, 0, options));
  try {
    const header = await readHeader(reader, { ...limits, totalSize: instance.size });
    if (header.deflated) throw new PipelineError(ErrorCodes.INTERNAL, 'a research copy is never deflated: this one is');
    const pixel = header.pixelData;
    return {
      transferSyntaxUid: header.transferSyntaxUid,
      littleEndian: header.encoding.littleEndian,
      dataset: header.dataset,
      // The reader stands at the pixel data value: its position is the value's offset in the copy.
      ...(pixel ? { pixelData: { tag: pixel.tag, vr: pixel.vr, length: pixel.length, valueOffset: header.body.position } } : {}),
    };
  } finally {
    await reader.close();
  }
}

/**
 * The element at a bulk data path ("00420011", "00540016/0/00181072": tags and item
 * indexes, as elementToJson names them), or undefined. Pure.
 */
export function elementAt(dataset: DicomDataset, path: string): DicomElement | undefined {
  const parts = path.split('/');
  let ds: DicomDataset | undefined = dataset;
  for (let i = 0; i < parts.length; i += 2) {
    const tagHex = parts[i] ?? '';
    if (!/^[0-9A-Fa-f]{8}$/.test(tagHex) || !ds) return undefined;
    const el: DicomElement | undefined = ds.get(parseInt(tagHex, 16) >>> 0);
    if (i + 1 >= parts.length) return el;
    const index = parts[i + 1] ?? '';
    if (!/^\d+$/.test(index)) return undefined;
    ds = el?.items?.[Number(index)];
  }
  return undefined;
}

/** The path of the top-level pixel data element (its tag in DICOM JSON form). */
export function pixelDataPath(header: CopyHeader): string | undefined {
  return header.pixelData ? tagToHex(header.pixelData.tag) : undefined;
}
