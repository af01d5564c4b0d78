/**
 * The watcher's adapters: an Event Grid topic for its events, a blob for its checkpoint, and
 * the cluster's S3 API for the files of a snapshot (the backfill).
 */
import { HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { AzureKeyCredential, EventGridPublisherClient } from '@azure/eventgrid';
import { DefaultAzureCredential, ManagedIdentityCredential } from '@azure/identity';
import { BlobServiceClient, ContainerClient } from '@azure/storage-blob';

import type { AnqWatcherSettings } from '../config/anqSettings';
import { ErrorCodes, fromServiceError, PipelineError } from '../errors';
import { listAnqPage } from '../storage/anqSourceStore';
import type { ListingState, ListingStateStore, LiveFile, LiveTree } from './notifyWatcher';
import type { ArchiveEventSink, ArchiveFileEvent, CheckpointStore, SnapshotFile, SnapshotFileLister, WatcherCheckpoint } from './watcher';

/** Publishes the watcher's events as CloudEvents 1.0 (as shared/events/publisher.ts publishes its own). */
export class EventGridArchiveSink implements ArchiveEventSink {
  private readonly client: EventGridPublisherClient<'CloudEvent'>;

  constructor(topic: AnqWatcherSettings['topic']) {
    const credential = topic.key
      ? new AzureKeyCredential(topic.key)
      : topic.clientId
        ? new ManagedIdentityCredential({ clientId: topic.clientId })
        : new DefaultAzureCredential();
    this.client = new EventGridPublisherClient(topic.endpoint, 'CloudEvent', credential, {
      allowInsecureConnection: topic.endpoint.startsWith('http:'),
    });
  }

  async publish(events: ArchiveFileEvent[]): Promise<void> {
    if (events.length === 0) return;
    try {
      await this.client.send(
        events.map((e) => ({ id: e.id, type: e.type, source: e.source, subject: e.subject, time: new Date(e.time), datacontenttype: 'application/json', data: e.data })),
      );
    } catch (e) {
      throw fromServiceError(e, 'publishing ANQ file events');
    }
  }
}

function statusOf(e: unknown): number | undefined {
  return (e as { statusCode?: number } | null)?.statusCode;
}

/**
 * A JSON document as one blob, replaced with If-Match (created with If-None-Match: *): the
 * watcher's checkpoint and the notify watcher's listing state.
 */
export class BlobJsonDocumentStore<T> {
  private containerReady = false;

  constructor(
    private readonly container: ContainerClient,
    private readonly blobName: string,
    private readonly what: string,
    private readonly isValid: (doc: T) => boolean,
  ) {}

  async read(): Promise<{ document: T; etag: string } | undefined> {
    try {
      // One request: the ETag is that of the bytes read.
      const r = await this.container.getBlockBlobClient(this.blobName).download();
      const chunks: Buffer[] = [];
      for await (const c of r.readableStreamBody ?? []) chunks.push(Buffer.from(c as Buffer));
      const document = JSON.parse(Buffer.concat(chunks).toString('utf8')) as T;
      if (!this.isValid(document)) throw new PipelineError(ErrorCodes.CONFIG_INVALID, `the ${this.what} is not a version 1 document`);
      return { document, etag: r.etag ?? '' };
    } catch (e) {
      if (statusOf(e) === 404) return undefined;
      if (e instanceof SyntaxError) throw new PipelineError(ErrorCodes.CONFIG_INVALID, `the ${this.what} is not JSON`, { cause: e });
      throw fromServiceError(e, `reading the ${this.what}`);
    }
  }

  async write(document: T, expectedEtag: string | undefined): Promise<string> {
    const body = JSON.stringify(document);
    try {
      if (!this.containerReady) {
        await this.container.createIfNotExists();
        this.containerReady = true;
      }
      const r = await this.container.getBlockBlobClient(this.blobName).upload(body, Buffer.byteLength(body), {
        conditions: expectedEtag ? { ifMatch: expectedEtag } : { ifNoneMatch: '*' },
        blobHTTPHeaders: { blobContentType: 'application/json' },
      });
      return r.etag ?? '';
    } catch (e) {
      const status = statusOf(e);
      if (status === 412 || status === 409) throw new PipelineError(ErrorCodes.CATALOG_CONFLICT, `the ${this.what} changed meanwhile`, { cause: e });
      throw fromServiceError(e, `writing the ${this.what}`);
    }
  }
}

/** The checkpoint's container (also the backfill job's, shared/backfill/adapters.ts). */
export function containerOf(checkpoint: Pick<AnqWatcherSettings['checkpoint'], 'storage' | 'container'>): ContainerClient {
  const s = checkpoint.storage;
  const service = s.kind === 'connectionString'
    ? BlobServiceClient.fromConnectionString(s.connectionString)
    : new BlobServiceClient(s.blobServiceUri, s.clientId ? new ManagedIdentityCredential({ clientId: s.clientId }) : new DefaultAzureCredential());
  return service.getContainerClient(checkpoint.container);
}

/** The snapshot watcher's checkpoint as one JSON blob. */
export class BlobCheckpointStore implements CheckpointStore {
  private readonly doc: BlobJsonDocumentStore<WatcherCheckpoint>;

  constructor(container: ContainerClient, blobName: string) {
    this.doc = new BlobJsonDocumentStore(container, blobName, 'ANQ watcher checkpoint', (c) => c?.version === 1 && Number.isSafeInteger(c.lastSnapshotId));
  }

  static fromSettings(checkpoint: AnqWatcherSettings['checkpoint']): BlobCheckpointStore {
    return new BlobCheckpointStore(containerOf(checkpoint), checkpoint.blobName);
  }

  async read(): Promise<{ checkpoint: WatcherCheckpoint; etag: string } | undefined> {
    const r = await this.doc.read();
    return r && { checkpoint: r.document, etag: r.etag };
  }

  write(checkpoint: WatcherCheckpoint, expectedEtag: string | undefined): Promise<string> {
    return this.doc.write(checkpoint, expectedEtag);
  }
}

/** The notify watcher's listing state as one JSON blob, next to the checkpoint. */
export class BlobListingStateStore extends BlobJsonDocumentStore<ListingState> implements ListingStateStore {
  constructor(container: ContainerClient, blobName: string) {
    super(container, blobName, 'ANQ notify watcher listing state', (s) => s?.version === 1 && typeof s.files === 'object' && s.files !== null);
  }

  static fromSettings(checkpoint: AnqWatcherSettings['checkpoint'], blobName: string): BlobListingStateStore {
    return new BlobListingStateStore(containerOf(checkpoint), blobName);
  }
}

/** S3 orders keys by their UTF-8 bytes (not by UTF-16 code units, as `>` on strings would). */
function keyAfter(key: string, after: string): boolean {
  return Buffer.compare(Buffer.from(key, 'utf8'), Buffer.from(after, 'utf8')) > 0;
}

/**
 * A snapshot's files through the S3 API: ListObjectsV2 of the snapshot's `.snapshot/<name>/`
 * directory under the bucket root (read-only S3 access suffices), resumed with StartAfter.
 */
export class S3SnapshotFileLister implements SnapshotFileLister {
  constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
  ) {}

  async listFiles(snapshot: { id: number; name: string }, prefix: string, after: string | undefined, options: { limit: number; abortSignal?: AbortSignal }): Promise<{ files: SnapshotFile[]; lastKey?: string; done: boolean }> {
    const page = await listAnqPage(this.client, this.bucket, prefix, { snapshotName: snapshot.name, startAfter: after, pageSize: options.limit, abortSignal: options.abortSignal });
    // A server that ignored start-after would hand the same page back forever: fail instead of looping.
    if (after !== undefined && page.lastKey !== undefined && !keyAfter(page.lastKey, after)) {
      throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'listing ANQ snapshot files: the S3 API did not start after the key asked for');
    }
    const files = page.files.filter((f) => after === undefined || keyAfter(f.key, after));
    return { files: files.map((f) => ({ key: f.key, size: f.size, lastModified: f.lastModified, etag: f.etag.replace(/^"|"$/g, '') })), lastKey: page.lastKey, done: page.done };
  }
}

/** Whole seconds: HeadObject's Last-Modified is an HTTP date, ListObjectsV2's may carry milliseconds; both must compare equal. */
function toSecond(d: Date): Date {
  return new Date(Math.floor(d.getTime() / 1000) * 1000);
}

/** The live tree through the S3 API: HeadObject for one file, ListObjectsV2 for a page. */
export class S3LiveTree implements LiveTree {
  constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
  ) {}

  async head(key: string, options: { abortSignal?: AbortSignal } = {}): Promise<LiveFile | undefined> {
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: options.abortSignal });
      return { key, etag: (r.ETag ?? '').replace(/^"|"$/g, ''), size: r.ContentLength ?? 0, lastModified: toSecond(r.LastModified ?? new Date(0)) };
    } catch (e) {
      const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      if (status === 404 || (e as Error).name === 'NotFound' || (e as Error).name === 'NoSuchKey') return undefined;
      throw fromServiceError(e, 'reading ANQ file properties');
    }
  }

  async listPage(prefix: string, after: string | undefined, options: { limit: number; abortSignal?: AbortSignal }): Promise<{ files: LiveFile[]; lastKey?: string; done: boolean }> {
    const page = await listAnqPage(this.client, this.bucket, prefix, { startAfter: after, pageSize: options.limit, abortSignal: options.abortSignal });
    if (after !== undefined && page.lastKey !== undefined && !keyAfter(page.lastKey, after)) {
      throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'listing ANQ files: the S3 API did not start after the key asked for');
    }
    const files = page.files.filter((f) => after === undefined || keyAfter(f.key, after));
    return { files: files.map((f) => ({ key: f.key, etag: f.etag.replace(/^"|"$/g, ''), size: f.size, lastModified: toSecond(f.lastModified) })), lastKey: page.lastKey, done: page.done };
  }
}
