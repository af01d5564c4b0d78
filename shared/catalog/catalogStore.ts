/**
 * The catalog as the ingestion writes it: the restricted index and the research catalog.
 * Interfaces here; the Cosmos DB adapter is in cosmosCatalog.ts.
 */
import type { IngestionDocument, InstanceDocument } from './documents';

export interface Versioned<T> {
  doc: T;
  etag: string;
}

/** The restricted, identified index: one document per source file. */
export interface IndexStore {
  /** Point read by id (hash of the source URL). Idempotent. Throws SERVICE_* on faults. */
  get(id: string): Promise<Versioned<IngestionDocument> | undefined>;
  /**
   * Creates (etag undefined) or replaces (etag given) the document, only if it is unchanged.
   * Throws CATALOG_CONFLICT when another writer got there first.
   */
  put(doc: IngestionDocument, etag: string | undefined): Promise<void>;
  /** Other source files that produced the same research SOP instance. */
  findByResearchInstance(sopInstanceUid: string): Promise<IngestionDocument[]>;
}

/** The research catalog: de-identified study, series and instance documents. */
export interface ResearchCatalogWriter {
  getInstance(studyInstanceUid: string, sopInstanceUid: string): Promise<Versioned<InstanceDocument> | undefined>;
  /** Creates or replaces (conditional on etag) an instance document. Throws CATALOG_CONFLICT. */
  putInstance(doc: InstanceDocument, etag: string | undefined): Promise<void>;
  /**
   * Every instance document that a source (keyed hash of its URL) produced, whatever its
   * version: what a deletion or an overwrite of that source must withdraw. A query. Idempotent.
   */
  findInstancesBySource(sourceKey: string): Promise<Versioned<InstanceDocument>[]>;
  /** Deletes an instance document if it still has the etag; missing is not an error. */
  deleteInstance(studyInstanceUid: string, sopInstanceUid: string, etag: string): Promise<void>;
  /**
   * Recomputes the series and then the study summary from the documents below them
   * (counts, modalities, SOP classes), with optimistic concurrency: concurrent refreshes of
   * one study converge, and none is lost. Deletes a series or study left with no instances.
   */
  refreshSummaries(studyInstanceUid: string, seriesInstanceUid: string): Promise<void>;
}

export function instanceDocId(sopInstanceUid: string): string {
  return `instance:${sopInstanceUid}`;
}

export function seriesDocId(seriesInstanceUid: string): string {
  return `series:${seriesInstanceUid}`;
}
