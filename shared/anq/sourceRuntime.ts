/**
 * The ANQ source store and quarantine from the settings, for the runtime: the S3 client, and
 * (for snapshot reads) the REST API's snapshots of the directories that hold the export.
 */
import type { ContainerClient } from '@azure/storage-blob';

import type { AnqSettings } from '../config/anqSettings';
import type { AnqScope } from '../events/ingestEvents';
import { anqS3Client, AnqSourceStore, RestSnapshotResolver } from '../storage/anqSourceStore';
import { AnqQuarantineStore, QuarantineRouter, SourceRouter } from '../storage/sourceRouter';
import type { QuarantineStore, SourceStore } from '../storage/stores';
import { coveringSnapshotSources, QumuloRestClient } from './qumuloRest';

/** What the event resolver checks ANQ events against (resolveRequestSource's `anq`). */
export function anqScopeOf(anq: AnqSettings): AnqScope {
  return { cluster: anq.cluster, bucket: anq.s3.bucket, exportPath: anq.exportPath, prefix: anq.prefix, readFrom: anq.readFrom };
}

/** The ANQ source store: reads through S3, as of the newest snapshot that covers the export (or the live tree with readFrom=head). */
export function createAnqSourceStore(anq: AnqSettings): AnqSourceStore {
  const s3 = anqS3Client(anq.s3);
  if (anq.readFrom === 'head' || !anq.rest) return new AnqSourceStore(s3);
  const api = new QumuloRestClient(anq.rest.endpoint, anq.rest.token);
  let covering: Promise<string[]> | undefined;
  const list = async (options: { abortSignal?: AbortSignal }) => {
    covering ??= coveringSnapshotSources(api, anq).catch((e: unknown) => {
      covering = undefined;
      throw e;
    });
    const ids = await covering;
    return (await api.listSnapshots(options)).filter((s) => ids.includes(s.source_file_id));
  };
  return new AnqSourceStore(s3, new RestSnapshotResolver(list));
}

/**
 * The ingestion's `source` and `quarantine` serving both sources: the landing containers'
 * stores as they are, and the ANQ cluster's for `anq/<bucket>` locations (when configured).
 */
export function bothSources(blob: { source: SourceStore; quarantine: QuarantineStore }, anq: AnqSettings | undefined, quarantineContainer: ContainerClient): { source: SourceStore; quarantine: QuarantineStore } {
  if (!anq) return blob;
  const source = new SourceRouter(blob.source, createAnqSourceStore(anq));
  return { source, quarantine: new QuarantineRouter(blob.quarantine, new AnqQuarantineStore(source, quarantineContainer)) };
}
