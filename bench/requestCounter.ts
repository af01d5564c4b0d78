/**
 * Counts the storage transactions and Cosmos DB operations the functions make, for the cost
 * model. The local host runs the functions in this process, so every response they receive passes
 * Node's `http.client.response.finish` diagnostics channel: no proxy in the path (the event URLs
 * must keep pointing at the real blob endpoint) and no change to the functions. The bench's own
 * polls of the catalog go through a relay on another port and are not counted; its uploads come
 * from a process of their own, which this one does not see.
 */
import * as diagnostics from 'node:diagnostics_channel';
import type { ClientRequest, IncomingMessage } from 'node:http';
import * as net from 'node:net';

export type BlobOperationClass = 'read' | 'write' | 'other' | 'delete';
export type CosmosOperationClass = 'read' | 'write' | 'query' | 'metadata';

export interface RequestCounts {
  blob: Record<BlobOperationClass, number>;
  /** Per REST operation, e.g. `GetBlob`, `PutBlock`. */
  blobOperations: Record<string, number>;
  cosmos: Record<CosmosOperationClass, number>;
  /** Per container and operation, e.g. `ingestions read`, `research-catalog query`. */
  cosmosOperations: Record<string, number>;
}

/**
 * The REST operation of a blob request and how Azure bills it: reads (Get Blob), writes (Put
 * Blob/Block/Block List, Copy, container create, list), other (properties, metadata, leases),
 * deletes (free).
 */
export function classifyBlobRequest(method: string, url: string): { operation: string; cls: BlobOperationClass } {
  const u = new URL(url, 'http://local');
  const comp = u.searchParams.get('comp');
  const restype = u.searchParams.get('restype');
  const m = method.toUpperCase();
  if (m === 'DELETE') return { operation: restype === 'container' ? 'DeleteContainer' : 'DeleteBlob', cls: 'delete' };
  if (restype === 'container') {
    if (comp === 'list') return { operation: 'ListBlobs', cls: 'write' };
    if (m === 'PUT' && !comp) return { operation: 'CreateContainer', cls: 'write' };
    return { operation: `Container${comp ? `:${comp}` : ''}`, cls: 'other' };
  }
  if (m === 'PUT') {
    if (comp === 'block') return { operation: 'PutBlock', cls: 'write' };
    if (comp === 'blocklist') return { operation: 'PutBlockList', cls: 'write' };
    if (comp === 'metadata') return { operation: 'SetBlobMetadata', cls: 'other' };
    if (comp === 'properties') return { operation: 'SetBlobProperties', cls: 'other' };
    if (comp === 'lease') return { operation: 'LeaseBlob', cls: 'other' };
    if (comp === 'tier') return { operation: 'SetBlobTier', cls: 'write' };
    if (!comp) return { operation: 'PutBlob', cls: 'write' };
    return { operation: `Put:${comp}`, cls: 'other' };
  }
  if (m === 'GET' && !comp) return { operation: 'GetBlob', cls: 'read' };
  if (m === 'HEAD' && !comp) return { operation: 'GetBlobProperties', cls: 'other' };
  return { operation: `${m}${comp ? `:${comp}` : ''}`, cls: 'other' };
}

/** Cosmos DB REST: documents under /dbs/{db}/colls/{coll}/docs[/{id}]; everything else is metadata. */
export function classifyCosmosRequest(method: string, url: string, isQuery: boolean): { container: string; cls: CosmosOperationClass } {
  const parts = new URL(url, 'http://local').pathname.split('/').filter(Boolean);
  const container = parts[2] === 'colls' && parts[3] ? decodeURIComponent(parts[3]) : '-';
  const docs = parts[4] === 'docs';
  const m = method.toUpperCase();
  if (!docs) return { container, cls: 'metadata' };
  if (isQuery) return { container, cls: 'query' };
  if (m === 'GET' && parts.length >= 6) return { container, cls: 'read' };
  if (m === 'GET') return { container, cls: 'query' };
  return { container, cls: 'write' };
}

export interface RequestCounter {
  /** Starts counting requests to these ports (the functions' blob endpoint and Cosmos endpoint). */
  watch(ports: { blob: number; cosmos: number }): void;
  reset(): void;
  snapshot(): RequestCounts;
  dispose(): void;
}

function emptyCounts(): RequestCounts {
  return {
    blob: { read: 0, write: 0, other: 0, delete: 0 },
    blobOperations: {},
    cosmos: { read: 0, write: 0, query: 0, metadata: 0 },
    cosmosOperations: {},
  };
}

/**
 * Counted when the response arrives, by the port the socket is connected to: the Host header
 * would not do, because the blob proxy forwards requests to Azurite with the client's Host.
 */
export function createRequestCounter(): RequestCounter {
  let ports: { blob: number; cosmos: number } | undefined;
  let counts = emptyCounts();
  const onResponse = (message: unknown) => {
    const { request, response } = message as { request?: ClientRequest; response?: IncomingMessage };
    if (!ports || !request) return;
    const port = (response?.socket ?? request.socket)?.remotePort;
    const method = request.method ?? 'GET';
    const url = request.path ?? '/';
    if (port === ports.blob) {
      const { operation, cls } = classifyBlobRequest(method, url);
      counts.blob[cls] += 1;
      counts.blobOperations[operation] = (counts.blobOperations[operation] ?? 0) + 1;
    } else if (port === ports.cosmos) {
      const isQuery = String(request.getHeader('x-ms-documentdb-isquery') ?? '').toLowerCase() === 'true' ||
        request.getHeader('x-ms-cosmos-is-query-plan-request') !== undefined;
      const { container, cls } = classifyCosmosRequest(method, url, isQuery);
      counts.cosmos[cls] += 1;
      const key = `${container} ${cls}`;
      counts.cosmosOperations[key] = (counts.cosmosOperations[key] ?? 0) + 1;
    }
  };
  diagnostics.subscribe('http.client.response.finish', onResponse);
  return {
    watch(p) {
      ports = p;
    },
    reset() {
      counts = emptyCounts();
    },
    snapshot() {
      return JSON.parse(JSON.stringify(counts)) as RequestCounts;
    },
    dispose() {
      diagnostics.unsubscribe('http.client.response.finish', onResponse);
    },
  };
}

/**
 * A plain TCP relay to a local port: the bench's own uploads and polls go through it, so they
 * reach the same services over a socket the counter does not watch.
 */
export interface Relay {
  port: number;
  close(): Promise<void>;
}

export async function startRelay(targetPort: number, host = '127.0.0.1'): Promise<Relay> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, host, () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        sockets.forEach((s) => s.destroy());
        server.close(() => resolve());
      }),
  };
}
