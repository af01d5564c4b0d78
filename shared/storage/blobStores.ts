/**
 * The Azure Blob Storage adapter of the blob stores (interfaces in stores.ts): the landing
 * (source) container, the research container and the quarantine container.
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';

import { DefaultAzureCredential, ManagedIdentityCredential, TokenCredential } from '@azure/identity';
import { BlobClient, BlobServiceClient, BlockBlobClient, ContainerClient, StorageRetryPolicyType } from '@azure/storage-blob';

import type { StorageConnection } from '../config/settings';
import { ErrorCodes, fromServiceError, isPipelineError, PipelineError } from '../errors';
import { frameIndexSidecarName } from '../retrieve/frameIndexCodec';
import { type BlobBody, BlobHttp } from './blobHttp';
import type { CopyRead, CopyReadOptions, OpenedSource, QuarantineStore, ResearchBlobVersion, ResearchCopyOrigin, ResearchStore, ResearchWrite, SourceProperties, SourceStore } from './stores';
import { totalOfContentRange } from './stores';

const BLOCK_SIZE = 4 * 1024 * 1024;

function credentialFor(conn: StorageConnection): TokenCredential {
  if (conn.kind !== 'identity') throw new Error('not an identity connection');
  return conn.clientId ? new ManagedIdentityCredential({ clientId: conn.clientId }) : new DefaultAzureCredential();
}

export function blobServiceClient(conn: StorageConnection): BlobServiceClient {
  const options = { retryOptions: { retryPolicyType: StorageRetryPolicyType.EXPONENTIAL, maxTries: 3, tryTimeoutInMs: 60_000 } };
  return conn.kind === 'connectionString'
    ? BlobServiceClient.fromConnectionString(conn.connectionString, options)
    : new BlobServiceClient(conn.blobServiceUri, credentialFor(conn), options);
}

function statusOf(e: unknown): number | undefined {
  return (e as { statusCode?: number } | null)?.statusCode;
}

export class AzureSourceStore implements SourceStore {
  /** One client per container: building one costs a pipeline each time, and the containers are few. */
  private readonly containers = new Map<string, ContainerClient>();
  /** Get Blob without the SDK's pipeline (blobHttp.ts): the head and the rest of every file. */
  private readonly http: BlobHttp;

  constructor(private readonly service: BlobServiceClient) {
    this.http = BlobHttp.of(service);
  }

  private blob(container: string, blobName: string): BlobClient {
    let client = this.containers.get(container);
    if (!client) {
      client = this.service.getContainerClient(container);
      this.containers.set(container, client);
    }
    return client.getBlobClient(blobName);
  }

  async getProperties(container: string, blobName: string, options: { abortSignal?: AbortSignal } = {}): Promise<SourceProperties | undefined> {
    try {
      const p = await this.blob(container, blobName).getProperties({ abortSignal: options.abortSignal });
      return { etag: p.etag ?? '', size: p.contentLength ?? 0, lastModified: p.lastModified ?? new Date(0), contentType: p.contentType };
    } catch (e) {
      if (statusOf(e) === 404) return undefined;
      throw fromServiceError(e, 'reading source blob properties');
    }
  }

  async open(container: string, blobName: string, count: number, options: { abortSignal?: AbortSignal } = {}): Promise<OpenedSource | undefined> {
    let r;
    try {
      // No condition: the response's ETag names the version these bytes belong to.
      r = await this.http.get(container, blobName, { offset: 0, count, abortSignal: options.abortSignal });
    } catch (e) {
      const status = statusOf(e);
      if (status === 404) return undefined;
      // An empty blob has no first byte to give: its properties come from a HEAD.
      if (status === 416) {
        const props = await this.getProperties(container, blobName, options);
        return props && { props, head: noBytes(), discard: () => undefined };
      }
      throw sourceError(e);
    }
    const body = r.body;
    const headBytes = r.contentLength ?? 0;
    const props: SourceProperties = {
      etag: r.etag ?? '',
      // "bytes 0-65535/1048576": the blob's size is after the slash.
      size: totalOfContentRange(r.contentRange) ?? headBytes,
      lastModified: r.lastModified ?? new Date(0),
      contentType: r.contentType,
    };
    return {
      props,
      head: wrapStreamErrors(body),
      // A small rest is read and dropped so that the connection can be used again.
      discard: () => (headBytes <= DISCARD_BY_READING_MAX ? body.discard() : body.destroy()),
    };
  }

  async readRange(container: string, blobName: string, etag: string, offset: number, count: number | undefined, options: { abortSignal?: AbortSignal } = {}): Promise<AsyncIterable<Uint8Array>> {
    try {
      const r = await this.http.get(container, blobName, { offset, count, ifMatch: etag, abortSignal: options.abortSignal });
      return wrapStreamErrors(r.body);
    } catch (e) {
      throw sourceError(e);
    }
  }
}

/** Responses up to this size are read to the end when dropped; larger ones close their connection. */
const DISCARD_BY_READING_MAX = 1024 * 1024;

async function* noBytes(): AsyncGenerator<Uint8Array> {
  // An empty blob.
}

function sourceError(e: unknown): PipelineError {
  if (e instanceof PipelineError) return e;
  const status = statusOf(e);
  if (status === 412) return new PipelineError(ErrorCodes.SOURCE_CHANGED, 'source blob changed while it was read', { cause: e });
  if (status === 404) return new PipelineError(ErrorCodes.SOURCE_NOT_FOUND, 'source blob no longer exists', { cause: e });
  return fromServiceError(e, 'reading source blob');
}

async function* wrapStreamErrors(stream: BlobBody): AsyncGenerator<Uint8Array> {
  try {
    for await (const chunk of stream) yield chunk as Uint8Array;
  } catch (e) {
    throw sourceError(e);
  }
}

export class AzureResearchStore implements ResearchStore {
  private readonly container: ContainerClient;

  /** Get Blob and Put Blob without the SDK's pipeline (blobHttp.ts): every copy read, and every copy up to 4 MiB written. */
  private readonly http: BlobHttp;

  constructor(
    service: BlobServiceClient,
    private readonly containerName: string,
  ) {
    this.container = service.getContainerClient(containerName);
    this.http = BlobHttp.of(service);
  }

  async getVersion(blobName: string): Promise<ResearchBlobVersion | undefined> {
    try {
      const p = await this.container.getBlobClient(blobName).getProperties();
      const m = p.metadata ?? {};
      return { etag: p.etag ?? '', rank: m.sourcerank ?? '', sourceKey: m.sourcekey, sourceVersion: m.sourceversion };
    } catch (e) {
      if (statusOf(e) === 404) return undefined;
      throw fromServiceError(e, 'reading research blob properties');
    }
  }

  async write(blobName: string, data: AsyncIterable<Uint8Array>, options: ResearchCopyOrigin & { expected?: ResearchBlobVersion; abortSignal?: AbortSignal }): Promise<ResearchWrite> {
    let blockBlob: BlockBlobClient | undefined;
    const blob = () => (blockBlob ??= this.container.getBlockBlobClient(blobName));
    const metadata = { sourcerank: options.rank, deidkeyid: options.keyId, sourcekey: options.sourceKey, sourceversion: options.sourceVersion };
    // The index tag finds the copy from its source without the catalog (findBySource).
    const tags = { sourcekey: options.sourceKey };
    const headers = { blobContentType: 'application/dicom' };
    const conditionsFor = (expected: ResearchBlobVersion | undefined) => (expected ? { ifMatch: expected.etag } : { ifNoneMatch: '*' });
    const commitError = (e: unknown) => {
      const status = statusOf(e);
      if (status === 412 || status === 409) return new PipelineError(ErrorCodes.CATALOG_CONFLICT, 'research copy changed while it was written', { cause: e });
      return fromServiceError(e, 'writing research copy');
    };

    // Small copies go in one request and stay in memory for a retry; larger ones are staged
    // block by block (one block in memory at a time) and committed with the condition.
    const pending: Buffer[] = [];
    let pendingBytes = 0;
    let size = 0;
    const blockIds: string[] = [];
    const prefix = randomBytes(6).toString('hex');
    const stage = async (buf: Buffer) => {
      const id = Buffer.from(`${prefix}-${String(blockIds.length).padStart(6, '0')}`).toString('base64');
      try {
        await blob().stageBlock(id, buf, buf.length, { abortSignal: options.abortSignal });
      } catch (e) {
        throw fromServiceError(e, 'writing research copy');
      }
      blockIds.push(id);
    };
    for await (const chunk of data) {
      const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      pending.push(b);
      pendingBytes += b.length;
      size += b.length;
      if (pendingBytes >= BLOCK_SIZE) {
        const all = Buffer.concat(pending, pendingBytes);
        pending.length = 0;
        pendingBytes = 0;
        for (let o = 0; o + BLOCK_SIZE <= all.length; o += BLOCK_SIZE) await stage(all.subarray(o, o + BLOCK_SIZE));
        const rest = all.length % BLOCK_SIZE;
        if (rest) {
          pending.push(all.subarray(all.length - rest));
          pendingBytes = rest;
        }
      }
    }

    // One conditional commit, kept with what it commits (the body, or the staged blocks) so
    // that after a conflict the caller can commit the same data under another expectation.
    const commitOnce = async (send: (conditions: ReturnType<typeof conditionsFor>) => Promise<{ etag?: string }>): Promise<ResearchWrite> => {
      const commit = async (expected: ResearchBlobVersion | undefined) => {
        try {
          return (await send(conditionsFor(expected))).etag ?? '';
        } catch (e) {
          throw commitError(e);
        }
      };
      try {
        return { committed: true, size, etag: await commit(options.expected) };
      } catch (e) {
        if (isPipelineError(e, ErrorCodes.CATALOG_CONFLICT)) return { committed: false, staged: { size, recommit: commit } };
        throw e;
      }
    };

    if (blockIds.length === 0) {
      // One Put Blob (blobHttp.ts) of the chunks as they came, without a copy into one buffer;
      // a retry, and a recommit after a conflict, send them again.
      const chunks = [...pending];
      return commitOnce((conditions) =>
        this.http.put(this.containerName, blobName, chunks, size, { contentType: headers.blobContentType, metadata, tags, ...conditions, abortSignal: options.abortSignal }),
      );
    }
    if (pendingBytes) await stage(Buffer.concat(pending, pendingBytes));
    return commitOnce((conditions) => blob().commitBlockList(blockIds, { metadata, tags, blobHTTPHeaders: headers, conditions }));
  }

  async findBySource(sourceKey: string): Promise<string[]> {
    if (!/^[0-9a-f]+$/.test(sourceKey)) throw new PipelineError(ErrorCodes.INTERNAL, 'a source key is hexadecimal');
    const names: string[] = [];
    try {
      for await (const b of this.container.findBlobsByTags(`sourcekey = '${sourceKey}'`)) names.push(b.name);
    } catch (e) {
      throw fromServiceError(e, 'finding research copies by source');
    }
    return names;
  }

  async readRange(blobName: string, offset: number, count: number | undefined, options: CopyReadOptions = {}): Promise<CopyRead> {
    // A zero-byte range has nothing to ask for: the service would answer 416.
    if (count === 0) return noBytes();
    const researchError = (e: unknown) => {
      const status = statusOf(e);
      if (status === 404) return new PipelineError(ErrorCodes.NOT_FOUND, 'research copy does not exist', { cause: e });
      if (status === 412) return new PipelineError(ErrorCodes.CATALOG_CONFLICT, 'research copy was replaced since its version was read (412)', { cause: e });
      return fromServiceError(e, 'reading research copy');
    };
    try {
      const r = await this.http.get(this.containerName, blobName, { offset, count, ifMatch: options.ifMatch, abortSignal: options.abortSignal });
      const body = r.body;
      const bytes = (async function* () {
        try {
          for await (const chunk of body) yield chunk as Uint8Array;
        } catch (e) {
          throw researchError(e);
        } finally {
          // A consumer that stops early (a client gone) must not leave the connection open.
          body.destroy();
        }
      })();
      // Ended before it was read (the answer withheld): a generator not started skips its finally.
      const end = bytes.return.bind(bytes);
      return Object.assign(bytes, {
        etag: r.etag,
        sourceVersion: r.metadata.sourceversion,
        size: totalOfContentRange(r.contentRange) ?? (offset === 0 && count === undefined ? r.contentLength : undefined),
        return: async () => {
          body.destroy();
          return end(undefined);
        },
      });
    } catch (e) {
      // A range that starts at the copy's end: nothing to read (a reader reading until a short range).
      if (statusOf(e) === 416) return noBytes();
      throw researchError(e);
    }
  }

  async delete(blobName: string, etag?: string): Promise<void> {
    try {
      const deleted = await this.container.getBlobClient(blobName).deleteIfExists({ conditions: etag ? { ifMatch: etag } : undefined });
      // The copy's frame index sidecar goes with it (a newer copy's, removed by a race, is built again on first use).
      if (deleted.succeeded) await this.container.getBlobClient(frameIndexSidecarName(blobName)).deleteIfExists();
    } catch (e) {
      if (statusOf(e) === 412) return;
      throw fromServiceError(e, 'deleting research copy');
    }
  }
}

export class AzureQuarantineStore implements QuarantineStore {
  constructor(
    private readonly source: BlobServiceClient,
    private readonly target: ContainerClient,
  ) {}

  async quarantine(sourceContainer: string, sourceBlob: string, etag: string, metadata: { errorCode: string; eventId: string }): Promise<string> {
    // The quarantine is restricted like the landing container, so the original path is kept.
    const name = `${sourceContainer}/${sourceBlob}`;
    try {
      const download = await this.source.getContainerClient(sourceContainer).getBlobClient(sourceBlob).download(0, undefined, { conditions: { ifMatch: etag } });
      const body = download.readableStreamBody;
      if (!body) throw new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'blob download returned no body');
      await this.target.getBlockBlobClient(name).uploadStream(body as Readable, BLOCK_SIZE, 2, {
        metadata: { errorcode: metadata.errorCode, eventid: metadata.eventId.replace(/[^A-Za-z0-9-]/g, '').slice(0, 64), sourceetag: etag.replace(/"/g, '') },
        blobHTTPHeaders: { blobContentType: 'application/octet-stream' },
      });
      return name;
    } catch (e) {
      throw sourceError(e);
    }
  }
}
