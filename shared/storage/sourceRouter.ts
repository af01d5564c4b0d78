/**
 * One source store (and quarantine) for both sources: a location whose container is
 * `anq/<bucket>` (see shared/anq/objectNames.ts) is read from the ANQ cluster, any other from
 * the landing containers. The ingestion takes one `source` and one `quarantine`; these let it
 * serve both without knowing which is which.
 */
import { Readable } from 'node:stream';

import type { ContainerClient } from '@azure/storage-blob';

import { bucketOfAnqContainer, parseAnqObjectName } from '../anq/objectNames';
import { ErrorCodes, fromServiceError, PipelineError } from '../errors';
import type { OpenedSource, QuarantineStore, SourceProperties, SourceStore } from './stores';

export class SourceRouter implements SourceStore {
  constructor(
    private readonly blob: SourceStore,
    private readonly anq: SourceStore | undefined,
  ) {}

  private route(container: string): { store: SourceStore; container: string } {
    const bucket = bucketOfAnqContainer(container);
    if (bucket === undefined) return { store: this.blob, container };
    if (!this.anq) throw new PipelineError(ErrorCodes.SOURCE_NOT_ALLOWED, 'the ANQ source is not configured');
    return { store: this.anq, container: bucket };
  }

  open(container: string, name: string, count: number, options?: { abortSignal?: AbortSignal }): Promise<OpenedSource | undefined> {
    const r = this.route(container);
    return r.store.open(r.container, name, count, options);
  }

  getProperties(container: string, name: string, options?: { abortSignal?: AbortSignal }): Promise<SourceProperties | undefined> {
    const r = this.route(container);
    return r.store.getProperties(r.container, name, options);
  }

  readRange(container: string, name: string, etag: string, offset: number, count: number | undefined, options?: { abortSignal?: AbortSignal }): Promise<AsyncIterable<Uint8Array>> {
    const r = this.route(container);
    return r.store.readRange(r.container, name, etag, offset, count, options);
  }
}

/**
 * Quarantines an ANQ source version: streams it from the cluster (pinned by its ETag and
 * snapshot) into the quarantine container under `anq/<bucket>/<key>`, the snapshot part left
 * out so that the same file keeps one name. Idempotent: same name, same content.
 */
export class AnqQuarantineStore implements QuarantineStore {
  constructor(
    private readonly source: SourceStore,
    private readonly target: ContainerClient,
  ) {}

  async quarantine(container: string, name: string, etag: string, metadata: { errorCode: string; eventId: string }): Promise<string> {
    const target = `${container}/${parseAnqObjectName(name).key}`;
    const data = await this.source.readRange(container, name, etag, 0, undefined);
    try {
      await this.target.getBlockBlobClient(target).uploadStream(Readable.from(data), 4 * 1024 * 1024, 2, {
        metadata: { errorcode: metadata.errorCode, eventid: metadata.eventId.replace(/[^A-Za-z0-9-]/g, '').slice(0, 64), sourceetag: etag.replace(/"/g, '') },
        blobHTTPHeaders: { blobContentType: 'application/octet-stream' },
      });
    } catch (e) {
      // A failure of the source stream is already a PipelineError (SOURCE_CHANGED, SOURCE_NOT_FOUND, SERVICE_*).
      if (e instanceof PipelineError) throw e;
      throw fromServiceError(e, 'writing an ANQ source to quarantine');
    }
    return target;
  }
}

/** The quarantine for both sources, routed like SourceRouter. */
export class QuarantineRouter implements QuarantineStore {
  constructor(
    private readonly blob: QuarantineStore,
    private readonly anq: QuarantineStore | undefined,
  ) {}

  quarantine(container: string, name: string, etag: string, metadata: { errorCode: string; eventId: string }): Promise<string> {
    if (bucketOfAnqContainer(container) === undefined) return this.blob.quarantine(container, name, etag, metadata);
    if (!this.anq) throw new PipelineError(ErrorCodes.SOURCE_NOT_ALLOWED, 'the ANQ source is not configured');
    return this.anq.quarantine(container, name, etag, metadata);
  }
}
