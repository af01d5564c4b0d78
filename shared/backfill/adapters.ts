/**
 * The backfill's adapters: a blob container listed page by page, the archive topic (CloudEvents),
 * and a checkpoint kept in a file (the command line) or, with its job, in a blob (a function run).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

import { AzureKeyCredential, EventGridPublisherClient } from '@azure/eventgrid';
import { DefaultAzureCredential, ManagedIdentityCredential } from '@azure/identity';
import type { ContainerClient } from '@azure/storage-blob';

import { BlobJsonDocumentStore, containerOf } from '../anq/watcherAdapters';
import type { AnqWatcherSettings } from '../config/anqSettings';
import { ErrorCodes, fromServiceError, PipelineError } from '../errors';
import { encodeBlobName } from '../events/ingestEvents';
import type { BackfillCheckpoint, BackfillCheckpointStore, BackfillEventSink, BackfillPage, PublishedEvent, SourceLister } from './backfill';
import { type BackfillJobDocument, type BackfillJobStore, isBackfillJobDocument } from './job';

/** A landing container, in the service's (name) order; the cursor is the listing's continuation token. */
export class BlobContainerLister implements SourceLister {
  readonly name: string;

  constructor(
    private readonly container: ContainerClient,
    /** The blob endpoint as the settings name it (source URLs are built on it, as ingestion canonicalises them). */
    private readonly blobEndpoint: string,
    private readonly prefix?: string,
  ) {
    this.name = `blob:${new URL(blobEndpoint).host}/${container.containerName}`;
  }

  async listPage(cursor: string | undefined, pageSize: number): Promise<BackfillPage> {
    try {
      const pages = this.container.listBlobsFlat(this.prefix ? { prefix: this.prefix } : {}).byPage({ continuationToken: cursor, maxPageSize: pageSize });
      const { value } = await pages.next();
      const page = value as { segment: { blobItems: { name: string; properties: { etag?: string; contentLength?: number; lastModified?: Date } }[] }; continuationToken?: string } | undefined;
      const base = `${this.blobEndpoint.replace(/\/+$/, '')}/${this.container.containerName}`;
      return {
        items: (page?.segment.blobItems ?? []).map((b) => ({
          url: `${base}/${encodeBlobName(b.name)}`,
          etag: b.properties.etag ?? '',
          size: b.properties.contentLength ?? 0,
          ...(b.properties.lastModified ? { lastModified: b.properties.lastModified.toISOString() } : {}),
        })),
        ...(page?.continuationToken ? { next: page.continuationToken } : {}),
      };
    } catch (e) {
      throw fromServiceError(e, 'listing the source container');
    }
  }
}

/** The archive topic (ANQ_EVENTS_TOPIC_ENDPOINT): a key, or a managed identity / the signed-in user. */
export class TopicBackfillSink implements BackfillEventSink {
  private readonly client: EventGridPublisherClient<'CloudEvent'>;

  constructor(topic: { endpoint: string; key?: string; clientId?: string }) {
    const credential = topic.key ? new AzureKeyCredential(topic.key) : topic.clientId ? new ManagedIdentityCredential({ clientId: topic.clientId }) : new DefaultAzureCredential();
    this.client = new EventGridPublisherClient(topic.endpoint, 'CloudEvent', credential, { allowInsecureConnection: topic.endpoint.startsWith('http:') });
  }

  async publish(events: PublishedEvent[]): Promise<void> {
    try {
      await this.client.send(events.map((e) => ({ id: e.id, type: e.type, source: e.source, subject: e.subject, time: new Date(e.time), datacontenttype: 'application/json', data: e.data })));
    } catch (e) {
      throw fromServiceError(e, 'publishing backfill events');
    }
  }
}

/** The checkpoint in a local file, replaced atomically (write, then rename); its "etag" is its content hash. */
export class FileCheckpointStore implements BackfillCheckpointStore {
  constructor(private readonly path: string) {}

  private static tag(text: string): string {
    return createHash('sha256').update(text).digest('hex').slice(0, 16);
  }

  async read(): Promise<{ checkpoint: BackfillCheckpoint; etag: string } | undefined> {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    let checkpoint: BackfillCheckpoint;
    try {
      checkpoint = JSON.parse(text) as BackfillCheckpoint;
    } catch (e) {
      throw new PipelineError(ErrorCodes.CONFIG_INVALID, 'the backfill checkpoint is not JSON', { cause: e });
    }
    if (checkpoint.version !== 1) throw new PipelineError(ErrorCodes.CONFIG_INVALID, 'the backfill checkpoint is not a version 1 checkpoint');
    return { checkpoint, etag: FileCheckpointStore.tag(text) };
  }

  async write(checkpoint: BackfillCheckpoint, etag: string | undefined): Promise<string> {
    const current = await this.read();
    if ((current?.etag ?? undefined) !== etag) throw new PipelineError(ErrorCodes.CATALOG_CONFLICT, 'the backfill checkpoint changed meanwhile (another backfill on the same checkpoint?)');
    const text = JSON.stringify(checkpoint);
    mkdirSync(dirname(this.path), { recursive: true });
    const temp = `${this.path}.${randomBytes(4).toString('hex')}.tmp`;
    writeFileSync(temp, text);
    renameSync(temp, this.path);
    return FileCheckpointStore.tag(text);
  }
}

/** The backfill job's document (shared/backfill/job.ts) as one blob, replaced with If-Match. */
export class BlobBackfillJobStore extends BlobJsonDocumentStore<BackfillJobDocument> implements BackfillJobStore {
  constructor(container: ContainerClient, blobName: string) {
    super(container, blobName, 'backfill job', isBackfillJobDocument);
  }

  static fromSettings(job: AnqWatcherSettings['checkpoint']): BlobBackfillJobStore {
    return new BlobBackfillJobStore(containerOf(job), job.blobName);
  }
}
