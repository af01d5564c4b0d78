/**
 * The analytics container in the research storage account, and the catalog's read feed: the
 * Azure adapters of the export (shared/analytics/snapshot.ts).
 */
import type { Container } from '@azure/cosmos';
import type { ContainerClient } from '@azure/storage-blob';

import type { ResearchDocument } from '../catalog/documents';
import { fromServiceError } from '../errors';
import { type AnalyticsStore, type CatalogFeed, POINTER_BLOB, type SnapshotPointer, snapshotPrefix, SNAPSHOTS_PREFIX } from './snapshot';

function statusOf(e: unknown): number | undefined {
  return (e as { statusCode?: number } | null)?.statusCode;
}

export class BlobAnalyticsStore implements AnalyticsStore {
  constructor(private readonly container: ContainerClient) {}

  /** Creates the container when missing. Idempotent. */
  async ensure(): Promise<void> {
    try {
      await this.container.createIfNotExists();
    } catch (e) {
      throw fromServiceError(e, 'analytics container');
    }
  }

  async readPointer(): Promise<{ pointer: SnapshotPointer; version: string } | undefined> {
    try {
      // One GET: the body and the ETag are of the same version.
      const response = await this.container.getBlockBlobClient(POINTER_BLOB).download();
      const chunks: Buffer[] = [];
      for await (const chunk of response.readableStreamBody ?? []) chunks.push(Buffer.from(chunk as Buffer));
      return { pointer: JSON.parse(Buffer.concat(chunks).toString('utf8')) as SnapshotPointer, version: response.etag ?? '' };
    } catch (e) {
      if (statusOf(e) === 404) return undefined;
      throw fromServiceError(e, 'analytics pointer');
    }
  }

  async uploadFile(name: string, localPath: string, options: { abortSignal?: AbortSignal } = {}): Promise<void> {
    try {
      await this.container.getBlockBlobClient(name).uploadFile(localPath, {
        blobHTTPHeaders: { blobContentType: 'application/vnd.apache.parquet' },
        ...(options.abortSignal ? { abortSignal: options.abortSignal } : {}),
      });
    } catch (e) {
      throw fromServiceError(e, 'analytics upload');
    }
  }

  async putJson(name: string, value: unknown): Promise<void> {
    const body = Buffer.from(`${JSON.stringify(value, null, 1)}\n`);
    try {
      await this.container.getBlockBlobClient(name).upload(body, body.length, { blobHTTPHeaders: { blobContentType: 'application/json' } });
    } catch (e) {
      throw fromServiceError(e, 'analytics manifest');
    }
  }

  async publish(pointer: SnapshotPointer, expectedVersion: string | undefined): Promise<boolean> {
    const body = Buffer.from(`${JSON.stringify(pointer, null, 1)}\n`);
    try {
      await this.container.getBlockBlobClient(POINTER_BLOB).upload(body, body.length, {
        blobHTTPHeaders: { blobContentType: 'application/json', blobCacheControl: 'no-store' },
        conditions: expectedVersion === undefined ? { ifNoneMatch: '*' } : { ifMatch: expectedVersion },
      });
      return true;
    } catch (e) {
      // 412: the pointer changed since it was read; 409: it was created since (If-None-Match: *).
      if (statusOf(e) === 412 || statusOf(e) === 409) return false;
      throw fromServiceError(e, 'analytics publish');
    }
  }

  async listSnapshots(): Promise<string[]> {
    const out: string[] = [];
    try {
      for await (const item of this.container.listBlobsByHierarchy('/', { prefix: SNAPSHOTS_PREFIX })) {
        if (item.kind === 'prefix') out.push(item.name.slice(SNAPSHOTS_PREFIX.length).replace(/\/$/, ''));
      }
    } catch (e) {
      throw fromServiceError(e, 'analytics listing');
    }
    return out.sort();
  }

  async deleteSnapshot(snapshotId: string): Promise<number> {
    let n = 0;
    try {
      for await (const blob of this.container.listBlobsFlat({ prefix: snapshotPrefix(snapshotId) })) {
        await this.container.getBlobClient(blob.name).deleteIfExists();
        n++;
      }
    } catch (e) {
      throw fromServiceError(e, 'analytics cleanup');
    }
    return n;
  }
}

/**
 * The research catalog's read feed (`readAll`, ReadFeed of the container): every document once,
 * a page at a time, without a query. Chosen over a query because the export reads everything
 * anyway, a Cosmos DB account serves a read feed without the query engine (cheaper RUs), and the
 * local emulator server's query engine re-copies the container for each page.
 */
export class CosmosCatalogFeed implements CatalogFeed {
  constructor(private readonly container: Container) {}

  async *pages(options: { pageSize?: number; abortSignal?: AbortSignal } = {}): AsyncIterable<readonly ResearchDocument[]> {
    const iterator = this.container.items.readAll<ResearchDocument & { _rid?: string }>({
      maxItemCount: options.pageSize ?? 1000,
      ...(options.abortSignal ? { abortSignal: options.abortSignal } : {}),
    });
    while (iterator.hasMoreResults()) {
      let page: ResearchDocument[];
      try {
        page = (await iterator.fetchNext()).resources ?? [];
      } catch (e) {
        throw fromServiceError(e, 'research catalog read feed');
      }
      if (page.length > 0) yield page;
    }
  }
}
