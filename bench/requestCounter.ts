/**
 * Counts the storage transactions and Cosmos DB operations the functions make, for the cost
 * model and the requests per instance by kind. It runs in the function host's process
 * (local/hostProcess.ts), where every response the functions receive passes Node's
 * `http.client.response.finish` diagnostics channel: no proxy in the path (the event URLs must
 * keep pointing at the real blob endpoint) and no change to the functions. The bench's own polls
 * of the catalog and its uploads come from other processes, which this one does not see.
 */
import * as diagnostics from 'node:diagnostics_channel';
import type { ClientRequest, IncomingMessage } from 'node:http';

export type BlobOperationClass = 'read' | 'write' | 'other' | 'delete';
export type CosmosOperationClass = 'read' | 'write' | 'query' | 'metadata';
/** What a blob request does, for the per-instance report (the class above is what Azure bills). */
export type BlobRequestKind = 'read' | 'write' | 'head' | 'properties' | 'tags' | 'list' | 'container' | 'lease' | 'delete' | 'other';
/** What a Cosmos DB request does: point operations by verb, queries (and their query plans), batches. */
export type CosmosRequestKind = 'pointRead' | 'create' | 'upsert' | 'replace' | 'patch' | 'delete' | 'query' | 'queryPlan' | 'batch' | 'readFeed' | 'metadata';

export interface RequestCounts {
  blob: Record<BlobOperationClass, number>;
  /** Per REST operation, e.g. `GetBlob`, `PutBlock`. */
  blobOperations: Record<string, number>;
  /** Per kind: reads, writes, HEADs, properties and metadata, tags, lists, ... */
  blobKinds: Record<string, number>;
  cosmos: Record<CosmosOperationClass, number>;
  /** Per container and class, e.g. `ingestions read`, `research-catalog query`. */
  cosmosOperations: Record<string, number>;
  /** Per kind: point reads, creates, upserts, replaces, patches, queries, ... */
  cosmosKinds: Record<string, number>;
  /** Per container and kind, e.g. `ingestions pointRead`, `research-catalog replace`. */
  cosmosContainerKinds: Record<string, number>;
  /** Queue requests per kind (send, receive, delete, update, other), when a queue port is watched. */
  queueKinds: Record<string, number>;
}

export interface BlobRequestClass {
  operation: string;
  cls: BlobOperationClass;
  kind: BlobRequestKind;
}

/**
 * The REST operation of a blob request, how Azure bills it (reads: Get Blob; writes: Put
 * Blob/Block/Block List, Copy, container create, list; other: properties, metadata, tags, leases;
 * deletes: free) and what it does.
 */
export function classifyBlobRequest(method: string, url: string): BlobRequestClass {
  const u = new URL(url, 'http://local');
  const comp = u.searchParams.get('comp');
  const restype = u.searchParams.get('restype');
  const m = method.toUpperCase();
  const is = (operation: string, cls: BlobOperationClass, kind: BlobRequestKind): BlobRequestClass => ({ operation, cls, kind });
  if (m === 'DELETE') return restype === 'container' ? is('DeleteContainer', 'delete', 'container') : is('DeleteBlob', 'delete', 'delete');
  if (comp === 'tags') return is(m === 'PUT' ? 'SetBlobTags' : 'GetBlobTags', 'other', 'tags');
  if (comp === 'blobs') return is('FindBlobsByTags', 'other', 'tags');
  if (comp === 'list') return is(restype === 'container' ? 'ListBlobs' : 'ListContainers', 'write', 'list');
  if (restype === 'container') {
    if (m === 'PUT' && !comp) return is('CreateContainer', 'write', 'container');
    return is(`Container${comp ? `:${comp}` : ''}`, 'other', 'container');
  }
  if (m === 'PUT') {
    if (comp === 'block') return is('PutBlock', 'write', 'write');
    if (comp === 'blocklist') return is('PutBlockList', 'write', 'write');
    if (comp === 'metadata') return is('SetBlobMetadata', 'other', 'properties');
    if (comp === 'properties') return is('SetBlobProperties', 'other', 'properties');
    if (comp === 'lease') return is('LeaseBlob', 'other', 'lease');
    if (comp === 'tier') return is('SetBlobTier', 'write', 'properties');
    if (!comp) return is('PutBlob', 'write', 'write');
    return is(`Put:${comp}`, 'other', 'other');
  }
  if (m === 'GET' && !comp) return is('GetBlob', 'read', 'read');
  if (m === 'HEAD' && !comp) return is('GetBlobProperties', 'other', 'head');
  if (comp === 'metadata') return is('GetBlobMetadata', 'other', 'properties');
  return is(`${m}${comp ? `:${comp}` : ''}`, 'other', 'other');
}

export interface CosmosRequestClass {
  container: string;
  cls: CosmosOperationClass;
  kind: CosmosRequestKind;
}

/**
 * Cosmos DB REST: documents under /dbs/{db}/colls/{coll}/docs[/{id}]; everything else is
 * metadata. `header` reads a request header (lower-case name): creates, upserts, queries, query
 * plans and batches are all POSTs to the same path.
 */
export function classifyCosmosRequest(method: string, url: string, header: (name: string) => string | undefined): CosmosRequestClass {
  const parts = new URL(url, 'http://local').pathname.split('/').filter(Boolean);
  const container = parts[2] === 'colls' && parts[3] ? decodeURIComponent(parts[3]) : '-';
  const docs = parts[4] === 'docs';
  const m = method.toUpperCase();
  const flag = (name: string) => (header(name) ?? '').toLowerCase() === 'true';
  if (!docs) return { container, cls: 'metadata', kind: 'metadata' };
  if (header('x-ms-cosmos-is-query-plan-request') !== undefined) return { container, cls: 'query', kind: 'queryPlan' };
  if (flag('x-ms-documentdb-isquery')) return { container, cls: 'query', kind: 'query' };
  const pointed = parts.length >= 6;
  if (m === 'GET') return pointed ? { container, cls: 'read', kind: 'pointRead' } : { container, cls: 'query', kind: 'readFeed' };
  if (m === 'POST' && flag('x-ms-cosmos-is-batch-request')) return { container, cls: 'write', kind: 'batch' };
  if (m === 'POST') return { container, cls: 'write', kind: flag('x-ms-documentdb-is-upsert') ? 'upsert' : 'create' };
  if (m === 'PUT') return { container, cls: 'write', kind: 'replace' };
  if (m === 'PATCH') return { container, cls: 'write', kind: 'patch' };
  if (m === 'DELETE') return { container, cls: 'write', kind: 'delete' };
  return { container, cls: 'write', kind: 'create' };
}

/** What a queue request does: send, receive (get messages, peek included), delete, update (lease renewal, visibility), other (queue create, metadata). */
export type QueueRequestKind = 'send' | 'receive' | 'delete' | 'update' | 'other';

/** Queue REST: messages under /{account}/{queue}/messages[/{id}]; everything else is `other`. */
export function classifyQueueRequest(method: string, url: string): QueueRequestKind {
  const parts = new URL(url, 'http://local').pathname.split('/').filter(Boolean);
  const at = parts.indexOf('messages');
  if (at < 0) return 'other';
  const one = parts.length > at + 1;
  const m = method.toUpperCase();
  if (m === 'POST' && !one) return 'send';
  if (m === 'GET' && !one) return 'receive';
  if (m === 'DELETE' && one) return 'delete';
  if (m === 'PUT' && one) return 'update';
  return 'other';
}

/** The ports whose requests are counted; `queue` is optional (the stack bench leaves it out). */
export interface WatchedPorts {
  blob: number;
  cosmos: number;
  queue?: number;
}

export interface RequestCounter {
  /** Starts counting requests to these ports (the functions' blob endpoint, Cosmos endpoint and, optionally, queue endpoint). */
  watch(ports: WatchedPorts): void;
  reset(): void;
  snapshot(): RequestCounts;
  dispose(): void;
}

export function emptyRequestCounts(): RequestCounts {
  return {
    blob: { read: 0, write: 0, other: 0, delete: 0 },
    blobOperations: {},
    blobKinds: {},
    cosmos: { read: 0, write: 0, query: 0, metadata: 0 },
    cosmosOperations: {},
    cosmosKinds: {},
    cosmosContainerKinds: {},
    queueKinds: {},
  };
}

function add(counts: Record<string, number>, key: string): void {
  counts[key] = (counts[key] ?? 0) + 1;
}

/** The request headers that tell Cosmos DB operations on one path apart (classifyCosmosRequest). */
const COSMOS_FLAG_HEADERS = ['x-ms-cosmos-is-query-plan-request', 'x-ms-documentdb-isquery', 'x-ms-cosmos-is-batch-request', 'x-ms-documentdb-is-upsert'];

/** One response as it was seen: classified only when the counts are read (see createRequestCounter). */
interface Seen {
  port: 'blob' | 'cosmos' | 'queue';
  method: string;
  path: string;
  /** Cosmos DB only: the values of COSMOS_FLAG_HEADERS, in that order. */
  flags?: (string | undefined)[];
}

function countSeen(counts: RequestCounts, seen: Seen): void {
  if (seen.port === 'blob') {
    const { operation, cls, kind } = classifyBlobRequest(seen.method, seen.path);
    counts.blob[cls] += 1;
    add(counts.blobOperations, operation);
    add(counts.blobKinds, kind);
  } else if (seen.port === 'cosmos') {
    const flags = seen.flags ?? [];
    const { container, cls, kind } = classifyCosmosRequest(seen.method, seen.path, (name) => flags[COSMOS_FLAG_HEADERS.indexOf(name)]);
    counts.cosmos[cls] += 1;
    add(counts.cosmosOperations, `${container} ${cls}`);
    add(counts.cosmosKinds, kind);
    add(counts.cosmosContainerKinds, `${container} ${kind}`);
  } else {
    add(counts.queueKinds, classifyQueueRequest(seen.method, seen.path));
  }
}

/**
 * Counted when the response arrives, by the port the socket is connected to: the Host header
 * would not do, because the blob proxy forwards requests to Azurite with the client's Host.
 *
 * The counter runs in the process whose CPU the stack bench measures, so a response only
 * leaves its method, path and (for Cosmos DB) four header values behind; parsing URLs and
 * classifying waits for `snapshot()`, which the bench calls after its CPU window. Classifying
 * as the responses came took about 0.18 ms of the host's CPU per instance ingested (a profile
 * of the 1,000-slice burst, profiler on, 0.11.0), none of which the pipeline spends in Azure.
 */
export function createRequestCounter(): RequestCounter {
  let ports: WatchedPorts | undefined;
  let counts = emptyRequestCounts();
  let seen: Seen[] = [];
  const onResponse = (message: unknown) => {
    const { request, response } = message as { request?: ClientRequest; response?: IncomingMessage };
    if (!ports || !request) return;
    const port = (response?.socket ?? request.socket)?.remotePort;
    const method = request.method ?? 'GET';
    const path = request.path ?? '/';
    if (port === ports.blob) seen.push({ port: 'blob', method, path });
    else if (port === ports.cosmos) {
      const flags = COSMOS_FLAG_HEADERS.map((name) => {
        const v = request.getHeader(name);
        return v === undefined ? undefined : String(v);
      });
      seen.push({ port: 'cosmos', method, path, flags });
    } else if (ports.queue !== undefined && port === ports.queue) seen.push({ port: 'queue', method, path });
  };
  diagnostics.subscribe('http.client.response.finish', onResponse);
  return {
    watch(p) {
      ports = p;
    },
    reset() {
      counts = emptyRequestCounts();
      seen = [];
    },
    snapshot() {
      for (const s of seen) countSeen(counts, s);
      seen = [];
      return JSON.parse(JSON.stringify(counts)) as RequestCounts;
    },
    dispose() {
      diagnostics.unsubscribe('http.client.response.finish', onResponse);
    },
  };
}
