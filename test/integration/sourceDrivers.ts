/**
 * The two sources the pipeline reads, behind one small driver, so that the ingestion tests run
 * the very same assertions on both (pipeline.test.ts, `describe.each` over the drivers):
 * - `blob`: a file is a blob uploaded to the landing container; the event source plays Event
 *   Grid and delivers BlobCreated / BlobDeleted to the function host as the upload happens.
 * - `anq`: a file is written into the replication target of the ANQ stand-ins; the pipeline sees
 *   it once a snapshot is taken (as replication does after each job), when the stack's snapshot
 *   watcher (its timer) diffs that snapshot and publishes VNA.Archive.FileReplicated /
 *   FileDeleted to the host's webhook; the ingestion reads the file through the S3 stand-in.
 *
 * `settle()` is where the two differ in time: the blob path waits for its events to be
 * delivered; the ANQ path takes a snapshot and waits for the watcher's checkpoint to reach it
 * (it moves only after the host accepted every event of the snapshot, ingestion included).
 */
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { BlobClient, BlobServiceClient, ContainerClient } from '@azure/storage-blob';

import type { WatcherCheckpoint } from '../../shared/anq/watcher';
import { loadSettings } from '../../shared/config/settings';
import { anqSourceUrl, encodeBlobName, FILE_DELETED, FILE_REPLICATED } from '../../shared/events/ingestEvents';
import { anqS3Client } from '../../shared/storage/anqSourceStore';
import { testStack, waitForEvents } from './stackEnv';

export type SourceKind = 'blob' | 'anq';

export const SOURCE_KINDS: SourceKind[] = ['blob', 'anq'];

export interface SourceDriver {
  readonly kind: SourceKind;
  /** Writes a file (or replaces it) under a name relative to the source's root; the pipeline sees it at the next settle() at the latest. */
  put(name: string, data: Buffer, options?: { blockSize?: number }): Promise<void>;
  /** Deletes a file. */
  remove(name: string): Promise<void>;
  /** Lets the pipeline see every put and remove so far without waiting for it (blob: they are seen as they happen; ANQ: a snapshot). */
  publish(): Promise<void>;
  /** Lets the pipeline see every put and remove so far, and resolves once it has ingested them all; throws after timeoutMs. */
  settle(timeoutMs?: number): Promise<void>;
  /** The ETag of a file's version as the pipeline reads it now (blob: the blob's; ANQ: the object's in the newest snapshot). */
  currentEtag(name: string): Promise<string | undefined>;
  /** The source URL the operations record of a file carries (and the operations view is asked with). */
  sourceUrl(name: string): string;
  /** An event about a file as the source's notifications carry it, with a fresh id. */
  event(kind: 'created' | 'deleted', name: string): Record<string, unknown>;
  /** A creation event naming a file outside what the pipeline is configured to read. */
  outsideEvent(): Record<string, unknown>;
  /** Delivers events to the ingestion function's webhook as Event Grid does; resolves with the HTTP status. */
  deliver(events: Record<string, unknown>[]): Promise<number>;
}

function webhookUrl(): string {
  return `${testStack().hostUrl}/runtime/webhooks/eventgrid?functionName=ingestReplicatedFile`;
}

async function post(body: unknown, contentType: string, headers: Record<string, string> = {}): Promise<number> {
  const res = await fetch(webhookUrl(), { method: 'POST', headers: { 'content-type': contentType, ...headers }, body: JSON.stringify(body) });
  await res.body?.cancel();
  return res.status;
}

class BlobDriver implements SourceDriver {
  readonly kind = 'blob';
  private readonly landing: ContainerClient;

  constructor() {
    const stack = testStack();
    const settings = loadSettings(stack.env);
    this.landing = BlobServiceClient.fromConnectionString(stack.env.SourceStorage!).getContainerClient(settings.sourceContainers[0]!);
  }

  async put(name: string, data: Buffer, options: { blockSize?: number } = {}): Promise<void> {
    await this.landing.getBlockBlobClient(name).uploadData(data, options.blockSize ? { blockSize: options.blockSize } : {});
  }

  async remove(name: string): Promise<void> {
    await this.landing.getBlobClient(name).delete();
  }

  async publish(): Promise<void> {
    // Blob events are raised by the upload itself.
  }

  async settle(timeoutMs = 60_000): Promise<void> {
    await waitForEvents(timeoutMs);
  }

  async currentEtag(name: string): Promise<string | undefined> {
    return (await this.landing.getBlobClient(name).getProperties()).etag;
  }

  sourceUrl(name: string): string {
    return `${testStack().blobEndpoint}/${this.landing.containerName}/${encodeBlobName(name)}`;
  }

  event(kind: 'created' | 'deleted', name: string): Record<string, unknown> {
    return {
      id: randomUUID(),
      topic: '/subscriptions/x/resourceGroups/local/providers/Microsoft.Storage/storageAccounts/devstoreaccount1',
      subject: `/blobServices/default/containers/${this.landing.containerName}/blobs/${name}`,
      eventType: kind === 'created' ? 'Microsoft.Storage.BlobCreated' : 'Microsoft.Storage.BlobDeleted',
      eventTime: new Date().toISOString(),
      dataVersion: '',
      metadataVersion: '1',
      data: { api: 'PutBlob', url: this.sourceUrl(name) },
    };
  }

  outsideEvent(): Record<string, unknown> {
    return { ...this.event('created', 'x.dcm'), data: { url: 'http://127.0.0.1:1/devstoreaccount1/anq-replica/x.dcm' } };
  }

  deliver(events: Record<string, unknown>[]): Promise<number> {
    return post(events, 'application/json', { 'aeg-event-type': 'Notification' });
  }
}

type StackAnq = NonNullable<ReturnType<typeof testStack>['anq']>;

class AnqDriver implements SourceDriver {
  readonly kind = 'anq';
  private readonly anq: StackAnq;
  private readonly checkpointBlob: BlobClient;
  private readonly s3: S3Client;
  /** The snapshot the last publish() or settle() took: events made by event() name it. */
  private lastSnapshot: { id: number; name: string } | undefined;

  constructor() {
    const stack = testStack();
    if (!stack.anq) throw new Error('the test stack runs without the ANQ stand-ins (globalSetup starts them)');
    this.anq = stack.anq;
    // The key the functions got.
    this.s3 = anqS3Client({ endpoint: this.anq.s3Endpoint, bucket: this.anq.bucket, region: 'us-east-1', accessKeyId: stack.env.ANQ_S3_ACCESS_KEY_ID!, secretAccessKey: stack.env.ANQ_S3_SECRET_ACCESS_KEY! });
    this.checkpointBlob = BlobServiceClient.fromConnectionString(stack.env.AzureWebJobsStorage ?? stack.env.SourceStorage!)
      .getContainerClient(this.anq.checkpoint.container)
      .getBlobClient(this.anq.checkpoint.blobName);
  }

  private file(name: string): string {
    return path.join(this.anq.targetDir, ...`${this.anq.prefix}${name}`.split('/'));
  }

  private fsPath(name: string): string {
    return `${this.anq.exportPath === '/' ? '' : this.anq.exportPath}/${this.anq.prefix}${name}`;
  }

  async put(name: string, data: Buffer): Promise<void> {
    const to = this.file(name);
    fs.mkdirSync(path.dirname(to), { recursive: true });
    // Whole or not at all, as replication lands a file: a snapshot never holds half of it.
    const partial = `${to}.partial-${randomUUID()}`;
    fs.writeFileSync(partial, data);
    fs.renameSync(partial, to);
  }

  async remove(name: string): Promise<void> {
    fs.rmSync(this.file(name));
  }

  private async checkpoint(): Promise<WatcherCheckpoint | undefined> {
    try {
      // One GET (one version): downloadToBuffer reads the size first and then the bytes, which
      // mixes two versions when the watcher rewrites its checkpoint in between.
      const res = await this.checkpointBlob.download();
      const parts: Buffer[] = [];
      for await (const part of res.readableStreamBody ?? []) parts.push(Buffer.from(part as Buffer));
      return JSON.parse(Buffer.concat(parts).toString('utf8')) as WatcherCheckpoint;
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode === 404) return undefined;
      throw e;
    }
  }

  async publish(): Promise<void> {
    const res = await fetch(`${this.anq.restEndpoint}/v3/snapshots/`, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.anq.restToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name_suffix: 'replication' }),
    });
    if (!res.ok) throw new Error(`the REST stand-in refused the snapshot (${res.status})`);
    this.lastSnapshot = (await res.json()) as { id: number; name: string };
  }

  async currentEtag(name: string): Promise<string | undefined> {
    const snapshot = this.newest();
    try {
      return (await this.s3.send(new HeadObjectCommand({ Bucket: this.anq.bucket, Key: `.snapshot/${snapshot.name}/${this.anq.prefix}${name}` }))).ETag;
    } catch (e) {
      if ((e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return undefined;
      throw e;
    }
  }

  async settle(timeoutMs = 60_000): Promise<void> {
    await this.publish();
    const snapshot = this.newest();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const c = await this.checkpoint();
      if (c && c.lastSnapshotId >= snapshot.id && !c.inProgress && !c.backfill) return;
      if (Date.now() > deadline) throw new Error(`the ANQ watcher did not reach snapshot ${snapshot.id} in ${timeoutMs} ms (checkpoint: ${JSON.stringify(c)})`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  sourceUrl(name: string): string {
    return anqSourceUrl(this.anq.cluster, this.fsPath(name));
  }

  private newest(): { id: number; name: string } {
    if (!this.lastSnapshot) throw new Error('no snapshot taken yet: publish() or settle() first');
    return this.lastSnapshot;
  }

  event(kind: 'created' | 'deleted', name: string): Record<string, unknown> {
    return this.cloudEvent(kind, this.fsPath(name));
  }

  private cloudEvent(kind: 'created' | 'deleted', fsPath: string): Record<string, unknown> {
    const snapshot = this.newest();
    return {
      specversion: '1.0',
      id: randomUUID(),
      type: kind === 'created' ? FILE_REPLICATED : FILE_DELETED,
      source: `anq://${this.anq.cluster}`,
      subject: fsPath,
      time: new Date().toISOString(),
      datacontenttype: 'application/json',
      data: { url: anqSourceUrl(this.anq.cluster, fsPath), path: fsPath, size: null, mtime: null, snapshotId: snapshot.id, snapshotName: snapshot.name },
    };
  }

  outsideEvent(): Record<string, unknown> {
    // Inside the export, outside the configured prefix: not the archive's.
    return this.cloudEvent('created', `${this.anq.exportPath === '/' ? '' : this.anq.exportPath}/elsewhere/x.dcm`);
  }

  deliver(events: Record<string, unknown>[]): Promise<number> {
    return post(events, 'application/cloudevents-batch+json');
  }
}

export function sourceDriver(kind: SourceKind): SourceDriver {
  return kind === 'blob' ? new BlobDriver() : new AnqDriver();
}
