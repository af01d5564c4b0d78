/**
 * What Event Grid publishes for Blob Storage, derived from a request/response pair that went
 * through the local blob proxy. Pure: no I/O, so the mapping is unit-tested on its own.
 */
import { randomUUID } from 'crypto';
import type { IncomingHttpHeaders } from 'http';

export const LOCAL_STORAGE_TOPIC =
  '/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/local/providers/Microsoft.Storage/storageAccounts/devstoreaccount1';

export type BlobApi = 'PutBlob' | 'PutBlockList' | 'CopyBlob' | 'DeleteBlob';

export interface BlobEventData {
  api: BlobApi;
  clientRequestId: string;
  requestId: string;
  eTag?: string;
  contentType?: string;
  contentLength?: number;
  blobType: string;
  url: string;
  sequencer: string;
  storageDiagnostics: { batchId: string };
}

/** An Event Grid schema event for Microsoft.Storage.BlobCreated / BlobDeleted. */
export interface BlobStorageEvent {
  id: string;
  topic: string;
  subject: string;
  eventType: 'Microsoft.Storage.BlobCreated' | 'Microsoft.Storage.BlobDeleted';
  eventTime: string;
  dataVersion: string;
  metadataVersion: string;
  data: BlobEventData;
}

/** One request as the proxy saw it, and Azurite's answer (headers only). */
export interface BlobExchange {
  method: string;
  /** Request target as received: path and query. */
  url: string;
  requestHeaders: IncomingHttpHeaders;
  status: number;
  responseHeaders: IncomingHttpHeaders;
}

export interface BlobWrite {
  eventType: BlobStorageEvent['eventType'];
  api: BlobApi;
  container: string;
  /** Decoded blob name, `/` kept. */
  blobName: string;
  clientRequestId: string;
  requestId: string;
  eTag?: string;
  /** Known from the request only for Put Blob with Content-Length; otherwise read from the blob. */
  contentLength?: number;
  /** Known from the request only when x-ms-blob-content-type was sent. */
  contentType?: string;
  blobType: string;
}

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * Says whether an exchange wrote or deleted a blob of one of the watched containers, and how.
 * Only committed writes count (2xx); container operations, blocks, metadata and snapshots do not.
 */
export function classifyBlobExchange(exchange: BlobExchange, account: string, containers: readonly string[]): BlobWrite | undefined {
  if (exchange.status < 200 || exchange.status > 299) return undefined;
  const url = new URL(exchange.url, 'http://proxy.invalid');
  const parts = url.pathname.split('/').slice(1);
  if (parts.length < 3 || parts[0] !== account) return undefined;
  const container = decodeSegment(parts[1] as string);
  if (!containers.includes(container)) return undefined;
  const blobName = parts.slice(2).map(decodeSegment).join('/');
  if (blobName === '') return undefined;
  const q = url.searchParams;
  if (q.has('restype') || q.has('snapshot') || q.has('versionid')) return undefined;
  const comp = q.get('comp');
  const method = exchange.method.toUpperCase();

  let api: BlobApi | undefined;
  if (method === 'PUT' && comp === null) api = header(exchange.requestHeaders, 'x-ms-copy-source') ? 'CopyBlob' : 'PutBlob';
  else if (method === 'PUT' && comp === 'blocklist') api = 'PutBlockList';
  else if (method === 'DELETE' && comp === null) api = 'DeleteBlob';
  if (!api) return undefined;

  const write: BlobWrite = {
    eventType: api === 'DeleteBlob' ? 'Microsoft.Storage.BlobDeleted' : 'Microsoft.Storage.BlobCreated',
    api,
    container,
    blobName,
    clientRequestId: header(exchange.requestHeaders, 'x-ms-client-request-id') ?? header(exchange.responseHeaders, 'x-ms-client-request-id') ?? '',
    requestId: header(exchange.responseHeaders, 'x-ms-request-id') ?? '',
    blobType: header(exchange.requestHeaders, 'x-ms-blob-type') ?? 'BlockBlob',
  };
  if (api !== 'DeleteBlob') {
    write.eTag = header(exchange.responseHeaders, 'etag');
    const blobContentType = header(exchange.requestHeaders, 'x-ms-blob-content-type');
    if (blobContentType) write.contentType = blobContentType;
    const length = header(exchange.requestHeaders, 'content-length');
    if (api === 'PutBlob' && length !== undefined && /^\d+$/.test(length)) write.contentLength = Number(length);
  }
  return write;
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** The blob's URL as the storage SDK writes it: each path segment percent-encoded. */
export function blobUrl(blobEndpoint: string, container: string, blobName: string): string {
  const name = blobName.split('/').map(encodeURIComponent).join('/');
  return `${blobEndpoint.replace(/\/+$/, '')}/${encodeURIComponent(container)}/${name}`;
}

/**
 * Monotonic, zero-padded hex sequencers that sort as strings, also across restarts
 * (the start time leads), as Event Grid's do within one blob's history.
 */
export class Sequencer {
  private readonly prefix: string;
  private counter = 0n;
  constructor(startMillis = Date.now()) {
    this.prefix = BigInt(startMillis).toString(16).padStart(16, '0');
  }
  next(): string {
    this.counter += 1n;
    return `${this.prefix}${this.counter.toString(16).padStart(16, '0')}`;
  }
}

export interface BuildEventOptions {
  /** Public blob endpoint including the account: `http://127.0.0.1:10000/devstoreaccount1`. */
  blobEndpoint: string;
  sequencer: string;
  topic?: string;
  now?: Date;
  id?: string;
}

/** Builds the Event Grid event; contentLength/contentType must be filled in by then for created blobs. */
export function buildBlobEvent(write: BlobWrite, options: BuildEventOptions): BlobStorageEvent {
  const data: BlobEventData = {
    api: write.api,
    clientRequestId: write.clientRequestId,
    requestId: write.requestId,
    eTag: write.eTag,
    contentType: write.contentType,
    contentLength: write.contentLength,
    blobType: write.blobType,
    url: blobUrl(options.blobEndpoint, write.container, write.blobName),
    sequencer: options.sequencer,
    storageDiagnostics: { batchId: randomUUID() },
  };
  if (write.api === 'DeleteBlob') {
    delete data.eTag;
    delete data.contentLength;
    if (data.contentType === undefined) delete data.contentType;
  }
  return {
    id: options.id ?? randomUUID(),
    topic: options.topic ?? LOCAL_STORAGE_TOPIC,
    subject: `/blobServices/default/containers/${write.container}/blobs/${write.blobName}`,
    eventType: write.eventType,
    eventTime: (options.now ?? new Date()).toISOString(),
    dataVersion: '',
    metadataVersion: '1',
    data,
  };
}
