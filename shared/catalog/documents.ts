/**
 * Cosmos DB documents.
 *
 * Research catalog container (`research-catalog`), partition key `/studyInstanceUid`: one
 * partition per research study holds its study document, its series documents and its
 * instance documents, so that a study's summary is recomputed inside one partition and
 * instance-level QIDO within a study is a single-partition query. Every value here is
 * de-identified: documents are built only from the de-identified data set.
 *
 * Index container (`ingestions`), partition key `/id`: one document per source file (id = a
 * hash of its URL), restricted, identified (it holds the source URL and the original UIDs).
 */

import type { DicomJson } from '../dicom/json';

interface ResearchDocumentBase {
  /** "study:<uid>", "series:<uid>" or "instance:<uid>" (unique within the study partition). */
  id: string;
  /** Partition key: the research StudyInstanceUID. */
  studyInstanceUid: string;
  /**
   * De-identified attributes of this level and the levels above it (patient, study, series),
   * as DICOM JSON, for QIDO matching (`c.dicom["00080060"].Value[0]`) and responses.
   * Only attributes with text or numeric values are stored; no bulk data.
   */
  dicom: DicomJson;
  updatedAt: string;
}

export interface StudyDocument extends ResearchDocumentBase {
  type: 'study';
  /** Distinct modalities of the study's series, sorted; also in dicom["00080061"]. */
  modalitiesInStudy: string[];
  sopClassesInStudy: string[];
  numberOfStudyRelatedSeries: number;
  numberOfStudyRelatedInstances: number;
}

export interface SeriesDocument extends ResearchDocumentBase {
  type: 'series';
  seriesInstanceUid: string;
  modality: string;
  numberOfSeriesRelatedInstances: number;
  sopClassesInSeries: string[];
  /**
   * The series' share of the catalog statistics (shared/statistics), recomputed with the rest of
   * the summary from the instance documents: never a counter, so a redelivered, deleted or
   * re-ingested instance cannot be counted twice. Absent on series written before 0.8.0.
   */
  statistics?: SeriesStatistics;
}

/** Instances and bytes of one series, by SOP class and by transfer syntax. */
export interface SeriesStatistics {
  bytes: number;
  sopClasses: Record<string, { instances: number; bytes: number }>;
  transferSyntaxes: Record<string, { instances: number; bytes: number }>;
}

export interface InstanceDocument extends ResearchDocumentBase {
  type: 'instance';
  seriesInstanceUid: string;
  sopInstanceUid: string;
  sopClassUid: string;
  modality: string;
  transferSyntaxUid: string;
  /** Bytes of the de-identified copy. */
  size: number;
  /** Name of the de-identified copy in the research container. */
  researchBlob: string;
  /**
   * Orders two different source files that carry the same SOP instance: the higher rank is
   * kept on the research side. A keyed hash, never the source URL or content hash itself.
   */
  sourceRank: string;
  /** Keyed hash of the source URL that this instance came from (not reversible without the key). */
  sourceKey: string;
  /**
   * Keyed hash of the source version (URL and ETag) that produced this instance: a superseded
   * or deleted version's instances are found and removed by it. Absent on documents written
   * before 0.5.0.
   */
  sourceVersion?: string;
  /** The generation that made this copy (shared/ingest/generation.ts); profileDigest from 0.9.0 on. */
  deidentification: { profile: string; profileVersion: string; profileDigest?: string; keyId: string };
  /**
   * Where the copy's frames lie (shared/retrieve/frameIndex.ts): the index itself when small,
   * else the name of a sidecar blob holding it. Absent on documents written before 0.7.0 and
   * when the frames could not be located at ingestion: built from the copy on first use.
   */
  frames?: StoredFrameIndex;
}

/**
 * A frame index as a document keeps it (shared/retrieve/frameIndexCodec.ts): native frames as
 * three numbers, encapsulated ones as the base64 of the fragments' lengths (little-endian
 * uint32; the fragments lie back to back from `start`, each after its 8-byte item header) and
 * of each frame's first fragment (omitted for one fragment per frame).
 */
export type StoredFrameIndex =
  | { kind: 'none' }
  | { kind: 'native'; count: number; offset: number; frameLength: number }
  | { kind: 'bitPacked'; count: number; offset: number; frameBits: number }
  | { kind: 'encapsulated'; count: number; start: number; lengths: string; frameStarts?: string }
  /** Too large for the document: in the research container, next to the copy (`<researchBlob>.frames`). */
  | { kind: 'sidecar'; blob: string; count: number };

export type ResearchDocument = StudyDocument | SeriesDocument | InstanceDocument;

export type IngestionStatus = 'processing' | 'cataloged' | 'failed' | 'quarantined' | 'deleted';

/** The restricted operations record of one source file. */
export interface IngestionDocument {
  /** sha256 of the source URL (hex); also the partition key. */
  id: string;
  sourceUrl: string;
  container: string;
  blobName: string;
  status: IngestionStatus;
  eTag?: string;
  size?: number;
  sha256?: string;
  lastModified?: string;
  errorCode?: string;
  errorMessage?: string;
  /** Where the source was copied for review, when quarantined or failed. */
  quarantineBlob?: string;
  original?: { studyInstanceUid?: string; seriesInstanceUid?: string; sopInstanceUid?: string; sopClassUid?: string };
  research?: { studyInstanceUid: string; seriesInstanceUid: string; sopInstanceUid: string; blob: string };
  /** Rank of this source among files carrying the same SOP instance (see InstanceDocument.sourceRank). */
  sourceRank?: string;
  /**
   * The id of the InstanceCataloged event this version's instance is announced with (a keyed
   * hash): a redelivery announces it again under the same id, in case the first announcement
   * failed after this record was written.
   */
  announcedAs?: string;
  /** The audit of the de-identification: no PHI, only the profile, key id and counts. */
  deidentification?: {
    profile: string;
    profileVersion: string;
    /** Profile.digest (from 0.9.0 on): with the key id, tells a re-index (shared/ingest/generation.ts) which copies to re-create. */
    profileDigest?: string;
    keyId: string;
    actions: Record<string, number>;
    gate: 'passed' | 'failed';
    /** Burned-in text blacked out under Clean Pixel Data: boxes per frame and frames. */
    pixelsCleaned?: {
      boxes: number;
      frames: number;
      /** How the boxes were found: the device's region set, OCR, or both (issue 17). */
      method?: 'regions' | 'ocr' | 'regions+ocr';
      /** The frames OCR read (0-based), and the gate read again after redaction. */
      sampledFrames?: number[];
      /** Set when a compressed source was decoded to be redacted: the lossless syntax the copy is written in. */
      transcodedTo?: string;
    };
  };
  transferSyntaxUid?: string;
  modality?: string;
  /** Event ids that led to this state, newest last (bounded). */
  eventIds: string[];
  attempts: number;
  firstSeenAt: string;
  updatedAt: string;
  catalogedAt?: string;
  deletedAt?: string;
}
