/**
 * WADO-RS metadata (PS3.18 10.4.1.1.2, F.2): the de-identified data set of each research copy
 * as DICOM JSON, read from the copy's header. Bulk data (the pixel data, binary values over
 * BULK_INLINE_MAX_BYTES) is a BulkDataURI that the bulkdata resource answers.
 *
 * OHIF asks for a series' metadata before anything else, and again on every open: each
 * instance's JSON is kept in a bounded cache, keyed by its catalog entry's version, so that a
 * second open reads no copy.
 */
import { parseSpecificCharacterSet } from '../dicom/charset';
import { asciiValue } from '../dicom/dataset';
import type { DicomJson } from '../dicom/json';
import { type BulkDataOptions, datasetToJson } from '../dicom/metadata';
import { Tags } from '../dicom/tags';
import { Lru } from '../lru';
import { type CopyHeader, pixelDataPath } from './copyHeader';
import type { ResearchInstance } from './researchInstances';

/** Binary values up to this size are given inline (InlineBinary); larger ones as a BulkDataURI. */
export const BULK_INLINE_MAX_BYTES = 1024;
/** Sequence nesting written in full (the parser allows as deep). */
const MAX_DEPTH = 64;
/** AvailableTransferSyntaxUID (0008,3002): the syntax the copy is stored (and sent) in. */
const AVAILABLE_TRANSFER_SYNTAX = '00083002';

/** The resource URL of an instance under a DICOMweb root (`https://host/api/dicomweb`). */
export function instanceUrl(root: string, instance: Pick<ResearchInstance, 'studyInstanceUid' | 'seriesInstanceUid' | 'sopInstanceUid'>): string {
  return `${root}/studies/${instance.studyInstanceUid}/series/${instance.seriesInstanceUid}/instances/${instance.sopInstanceUid}`;
}

/** The DICOM JSON of one research copy's header, bulk data as URIs under `instanceBase`. Pure. */
export function metadataOf(header: CopyHeader, instanceBase: string): DicomJson {
  const charsets = parseSpecificCharacterSet(asciiValue(header.dataset.get(Tags.SpecificCharacterSet)));
  const bulk: BulkDataOptions = { maxInlineBytes: BULK_INLINE_MAX_BYTES, maxDepth: MAX_DEPTH, uri: (path) => `${instanceBase}/bulkdata/${path}` };
  const json = datasetToJson(header.dataset, charsets, header.littleEndian, 0, undefined, bulk);
  json[AVAILABLE_TRANSFER_SYNTAX] = { vr: 'UI', Value: [header.transferSyntaxUid] };
  const pixel = pixelDataPath(header);
  if (pixel && header.pixelData) json[pixel] = { vr: header.pixelData.vr, BulkDataURI: bulk.uri(pixel) };
  return Object.fromEntries(Object.entries(json).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * Serialized metadata by key, least recently used dropped first past `maxBytes` (UTF-16
 * length, close to the bytes held).
 */
export class MetadataCache {
  private readonly entries: Lru<string>;

  constructor(private readonly maxBytes = 64 * 1024 * 1024) {
    this.entries = new Lru(maxBytes, (json) => json.length);
  }

  /** The key of an instance's metadata: a replaced copy has another catalog version, so another key. */
  static keyOf(instance: Pick<ResearchInstance, 'researchBlob' | 'updatedAt' | 'size'>, root: string): string {
    return `${root}|${instance.researchBlob}|${instance.updatedAt}|${instance.size}`;
  }

  get(key: string): string | undefined {
    return this.entries.get(key);
  }

  /** Keeps the metadata unless it is over a quarter of the cache. */
  set(key: string, value: string): void {
    if (value.length <= this.maxBytes / 4) this.entries.set(key, value);
  }
}
