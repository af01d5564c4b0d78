/** The restricted operations view of one source file (GET /api/ingestions?source=<url>). */
import type { HttpResponseInit } from '@azure/functions';

import type { IndexStore } from '../catalog/catalogStore';
import type { IngestionDocument } from '../catalog/documents';
import { ErrorCodes, httpErrorBody, httpStatusFor, PipelineError } from '../errors';
import { type AnqScope, resolveRequestSource } from '../events/ingestEvents';
import { sourceId } from './ingestSourceFile';

export interface OperationsDeps {
  index: IndexStore;
  sourceBlobEndpoints: string[];
  /** The ANQ export, so that `source=anq://...` names a file of it (refused when undefined). */
  anqScope?: AnqScope;
  settings: { sourceContainers: string[] };
}

function view(doc: IngestionDocument) {
  return {
    source: doc.sourceUrl,
    status: doc.status,
    errorCode: doc.errorCode,
    errorMessage: doc.errorMessage,
    eTag: doc.eTag,
    size: doc.size,
    sha256: doc.sha256,
    lastModified: doc.lastModified,
    modality: doc.modality,
    transferSyntaxUid: doc.transferSyntaxUid,
    original: doc.original,
    research: doc.research,
    quarantineBlob: doc.quarantineBlob,
    deidentification: doc.deidentification,
    attempts: doc.attempts,
    eventIds: doc.eventIds,
    firstSeenAt: doc.firstSeenAt,
    updatedAt: doc.updatedAt,
    catalogedAt: doc.catalogedAt,
    deletedAt: doc.deletedAt,
  };
}

export async function describeIngestion(deps: OperationsDeps, source: string | null): Promise<HttpResponseInit> {
  try {
    if (!source) throw new PipelineError(ErrorCodes.QUERY_INVALID, 'query parameter "source" (the source file URL) is required');
    const resolved = resolveRequestSource({ url: source }, { blobEndpoints: deps.sourceBlobEndpoints, sourceContainers: deps.settings.sourceContainers, ...(deps.anqScope ? { anq: deps.anqScope } : {}) });
    if (resolved.kind !== 'source') throw new PipelineError(ErrorCodes.QUERY_INVALID, `"source" is not a file of a configured source (container or ANQ export): ${resolved.reason}`);
    const record = await deps.index.get(sourceId(resolved.location.canonicalUrl));
    if (!record) throw new PipelineError(ErrorCodes.NOT_FOUND, 'no ingestion is recorded for this source');
    const doc = record.doc;
    let duplicates;
    if (doc.research) {
      // Files carrying the same instance: the research side keeps the highest rank (newest source).
      const all = (await deps.index.findByResearchInstance(doc.research.sopInstanceUid)).filter((d) => d.status === 'cataloged');
      if (all.length > 1 || (all.length === 1 && all[0]?.id !== doc.id)) {
        const kept = all.reduce((a, b) => ((b.sourceRank ?? '') > (a.sourceRank ?? '') ? b : a));
        duplicates = {
          rule: 'the research side keeps the source written most recently (blob Last-Modified); ties go to a keyed hash of the URL',
          keptSource: kept.sourceUrl,
          thisSourceKept: kept.id === doc.id,
          sources: all.map((d) => ({ source: d.sourceUrl, sha256: d.sha256, lastModified: d.lastModified, transferSyntaxUid: d.transferSyntaxUid })),
        };
      }
    }
    return { status: 200, jsonBody: { ...view(doc), duplicates } };
  } catch (e) {
    return { status: httpStatusFor(e), jsonBody: httpErrorBody(e) };
  }
}
