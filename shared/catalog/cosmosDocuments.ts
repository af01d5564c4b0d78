/**
 * Point operations on Cosmos DB documents (read, create, replace, delete) and queries within one
 * partition, over plain `node:http(s)`: the catalog requests every ingestion makes (the index
 * record read and created, the instance document created, summaries read, re-counted and
 * replaced) and the access record every retrieve writes. Queries across partitions, container
 * management and everything else stay on the SDK.
 *
 * Why not the SDK for these: per request it builds a request context, a diagnostics tree it
 * then formats, a retry wrapper per policy and a pipeline request, and it escapes the body
 * after stringifying it. For a create, a point read and an absent read it used 0.8-1.0 ms of
 * CPU against 0.35-0.45 ms here (docs/performance.md, 0.13.0), and an ingestion makes about
 * three such requests per instance. A query within one partition needs no query plan (the
 * gateway runs it as it is, with the partition key header); the SDK asks for one before every
 * query all the same, which cost about 0.45 ms more CPU per query (docs/performance.md, 0.14.0).
 *
 * What it does, as the SDK does it for these requests (REST API version 2020-07-15):
 * - authorises with the account key (the master-key signature of the verb, the resource type,
 *   the resource link and the date) or with an Entra ID token from a TokenCredential (the
 *   account's scope, then `https://cosmos.azure.com/.default`), cached until it nears expiry;
 * - keeps the session tokens of every answer, per partition key range, and sends them with its
 *   reads and queries; `sessionToken()` hands them to the SDK's queries (its `sessionToken`
 *   option), so that a query in this process sees what this process wrote, under the account's
 *   Session consistency (infra/azuredeploy.json);
 * - retries 429 after the service's `x-ms-retry-after-ms`, up to 9 times and 30 s in all;
 *   retries a read that meets 404 with substatus 1002 (this session's writes not yet at that
 *   replica) a few times, and then fails it as unavailable (503), never as absent, and drops
 *   the container's tokens (those of a container since created again are refused for good); retries a
 *   read whose connection failed (ECONNRESET, EPIPE, ...) up to 3 tries. Writes are not sent
 *   again on a connection failure: as with the SDK, the caller decides (a create that had in
 *   fact been carried out answers 409 the next time, a conditional replace 412);
 * - ends a try that gets no full answer in 60 s (ETIMEDOUT), keeps connections alive;
 * - under load, sends the creates and point reads of a container that wait behind the one
 *   out as one bulk request, as the SDK's bulk sends it (bulkLane.ts).
 * Failures are `CosmosRequestError`s carrying the status in `code` and `statusCode` (as the
 * SDK's errors carry it, which the catalog's retry and recovery read), or the socket's error
 * code when no answer came. No message names a document: an id can be a research UID, and the
 * index's ids are hashes of source URLs.
 */
import * as crypto from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';
import { setTimeout as delay } from 'node:timers/promises';

import type { TokenCredential } from '@azure/core-auth';

import { TokenCache } from '../tokenCache';
import { type BulkAnswer, BulkLane, type OperationOutcome, type PointOperation, type PointResult } from './bulkLane';

/** The REST API version the SDK (4.9) sends, which the local emulator server also answers. */
export const COSMOS_API_VERSION = '2020-07-15';
const SERVICE_SCOPE = 'https://cosmos.azure.com/.default';

const TRY_TIMEOUT_MS = 60_000;
const MAX_THROTTLE_RETRIES = 9;
const MAX_THROTTLE_WAIT_MS = 30_000;
const MAX_SESSION_RETRIES = 4;
const SESSION_RETRY_BASE_MS = 20;
const MAX_READ_TRIES = 3;
const READ_RETRY_MS = 100;
/** Socket failures after which a read is sent again (the SDK's list, as Node names them). */
const RETRIABLE_SOCKET_ERRORS: ReadonlySet<string> = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNREFUSED']);
/** 404 substatus: the replica has not yet caught up with the session token sent. */
const READ_SESSION_NOT_AVAILABLE = 1002;
/** Documents asked for per page of a query (the service's default is 100). */
const QUERY_PAGE_ITEMS = 1000;

/** How requests are authorised. */
export type CosmosAuth =
  /** The account key (base64), as in a connection string. */
  | { kind: 'key'; key: string }
  /** Entra ID: a managed identity in Azure. */
  | { kind: 'token'; credential: TokenCredential };

/** A point operation that failed: the service's status, or the socket's error code when no answer came. */
export class CosmosRequestError extends Error {
  /** The HTTP status, as the SDK's errors carry it; or the socket's error code (`ECONNRESET`, ...). */
  readonly code?: number | string;
  readonly statusCode?: number;
  readonly substatus?: number;

  constructor(message: string, options: { statusCode?: number; substatus?: number; code?: string; cause?: unknown } = {}) {
    super(message, options.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'CosmosRequestError';
    if (options.statusCode !== undefined) {
      this.statusCode = options.statusCode;
      this.code = options.statusCode;
    } else if (options.code !== undefined) {
      this.code = options.code;
    }
    if (options.substatus !== undefined) this.substatus = options.substatus;
  }
}

/** A query with its named parameters (`@name`), as the REST API and the SDK take it. */
export interface QuerySpec {
  query: string;
  parameters?: { name: string; value: string | number | boolean | null }[];
}

/** A document as read, with its ETag. */
export interface ReadDocument<T> {
  resource: T & { _etag: string };
  etag: string;
}

export interface CosmosDocumentClientOptions {
  /** The clock the signature's date comes from (tests). */
  now?: () => Date;
  /**
   * Point requests (creates and reads) out at once per container before further ones wait and
   * leave together as one bulk request (bulkLane.ts); 0 sends every one alone. Default 1.
   */
  requestsInFlight?: number;
}

const agents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };

/** Point operations on the documents of one account's containers. */
export class CosmosDocumentClient {
  private readonly base: URL;
  private readonly key?: Buffer;
  private readonly tokens?: TokenCache;
  readonly now: () => Date;
  readonly requestsInFlight: number;
  /** One per container, so that every user of a container shares its bulk requests. */
  private readonly containers = new Map<string, CosmosDocuments>();

  constructor(endpoint: string, auth: CosmosAuth, options: CosmosDocumentClientOptions = {}) {
    this.base = new URL(endpoint);
    if (auth.kind === 'key') this.key = Buffer.from(auth.key, 'base64');
    else this.tokens = new TokenCache(auth.credential, [`${this.base.origin}/.default`, SERVICE_SCOPE], 'Cosmos DB');
    this.now = options.now ?? (() => new Date());
    this.requestsInFlight = options.requestsInFlight ?? 1;
  }

  /** The documents of one container. */
  container(databaseId: string, containerId: string): CosmosDocuments {
    const link = `dbs/${databaseId}/colls/${containerId}`;
    let docs = this.containers.get(link);
    if (!docs) {
      docs = new CosmosDocuments(this, link);
      this.containers.set(link, docs);
    }
    return docs;
  }

  /** The authorization header's value for one request. */
  async authorization(method: string, resourceType: string, resourceLink: string, date: string): Promise<string> {
    if (this.key) {
      const text = `${method.toLowerCase()}\n${resourceType}\n${resourceLink}\n${date.toLowerCase()}\n\n`;
      const sig = crypto.createHmac('sha256', this.key).update(text).digest('base64');
      return encodeURIComponent(`type=master&ver=1.0&sig=${sig}`);
    }
    return `type=aad&ver=1.0&sig=${await (this.tokens as TokenCache).get()}`;
  }

  /** One try of one request: its status, headers and body text. */
  send(method: string, path: string, headers: Record<string, string>, body: string | undefined): Promise<Answer> {
    const url = new URL(path, this.base);
    const secure = url.protocol === 'https:';
    return new Promise<Answer>((resolve, reject) => {
      const request = (secure ? https : http).request(url, { method, headers, agent: secure ? agents.https : agents.http }, (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', reject);
        response.on('end', () => {
          request.setTimeout(0);
          resolve({ status: response.statusCode ?? 0, headers: response.headers, text: (chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks)).toString('utf8') });
        });
      });
      request.setTimeout(TRY_TIMEOUT_MS, () => request.destroy(Object.assign(new Error('no answer in time'), { code: 'ETIMEDOUT' })));
      request.on('error', reject);
      request.end(body);
    });
  }
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

/**
 * The session tokens of one container, per partition key range: the latest seen of each
 * (`<range>:<version>#<global LSN>[#<region>=<LSN>...]`). Writes go to one region here
 * (infra/azuredeploy.json), so the global LSN orders them; a token of a newer version (after a
 * split or a failover) replaces an older one.
 */
export class SessionTokens {
  private readonly byRange = new Map<string, { token: string; version: number; lsn: number }>();

  /** Takes in an answer's `x-ms-session-token` (one or more ranges, comma separated). */
  merge(header: string | undefined): void {
    if (!header) return;
    for (const part of header.split(',')) {
      const colon = part.indexOf(':');
      if (colon <= 0) continue;
      const range = part.slice(0, colon);
      const token = part.slice(colon + 1);
      const [version, lsn] = token.split('#').map(Number);
      if (version === undefined || lsn === undefined || !Number.isFinite(version) || !Number.isFinite(lsn)) continue;
      const known = this.byRange.get(range);
      if (!known || version > known.version || (version === known.version && lsn > known.lsn)) this.byRange.set(range, { token, version, lsn });
    }
  }

  /** Forgets every token. */
  clear(): void {
    this.byRange.clear();
  }

  /** Every range's token, as the `x-ms-session-token` header carries them; undefined before any answer had one. */
  toString(): string | undefined {
    if (this.byRange.size === 0) return undefined;
    return [...this.byRange].map(([range, t]) => `${range}:${t.token}`).join(',');
  }
}

/** One request on documents: a point operation, or one page of a query. */
interface Operation {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** The document's link (`dbs/../colls/../docs/<id>`), or the container's for a create or a query. */
  link: string;
  partitionKey: string;
  body?: string;
  ifMatch?: string;
  /** What the request does, for its errors. */
  what: string;
  /** A query's page: the continuation token of the page before (none for the first). */
  query?: { continuation?: string };
}

/** Point operations on the documents of one container. Every method may be called concurrently. */
export class CosmosDocuments {
  private readonly sessions = new SessionTokens();
  /** Creates and point reads, batched under load (bulkLane.ts). */
  readonly lane: BulkLane;

  constructor(
    private readonly client: CosmosDocumentClient,
    /** `dbs/<database>/colls/<container>` */
    readonly link: string,
  ) {
    this.lane = new BulkLane({ alone: (op) => this.alone(op), bulk: (ops, rangeId) => this.bulk(ops, rangeId), ranges: () => this.ranges() }, { inFlight: client.requestsInFlight });
  }

  /** The session tokens this process holds for the container, for a query's `sessionToken` option. */
  sessionToken(): string | undefined {
    return this.sessions.toString();
  }

  /** Reads a document; undefined when there is none. Under load it may leave with other requests of the container as one bulk request. */
  async read<T>(id: string, partitionKey: string): Promise<ReadDocument<T> | undefined> {
    validateId(id);
    const result = await this.lane.send({ kind: 'read', id, partitionKey });
    const resource = 'resource' in result ? (result.resource as (T & { _etag: string }) | undefined) : undefined;
    return resource && { resource, etag: resource._etag };
  }

  /**
   * Creates a document; 409 when one with its id is in the partition. Resolves with its ETag.
   * Under load it may leave with other creates of the container as one bulk request.
   */
  async create<T extends { id: string }>(doc: T, partitionKey: string): Promise<{ etag: string }> {
    validateId(doc.id);
    const result = await this.lane.send({ kind: 'create', body: JSON.stringify(doc), partitionKey });
    return { etag: 'etag' in result ? result.etag : '' };
  }

  /** One operation alone, with its retries. */
  private async alone(op: PointOperation): Promise<PointResult> {
    if (op.kind === 'create') {
      const answer = await this.request({ method: 'POST', link: this.link, partitionKey: op.partitionKey, body: op.body, what: 'creating a document' });
      return { etag: etagOf(answer) };
    }
    const answer = await this.request({ method: 'GET', link: this.docLink(op.id), partitionKey: op.partitionKey, what: 'reading a document' });
    return { resource: answer.status === 404 ? undefined : (JSON.parse(answer.text) as object) };
  }

  /**
   * One bulk request (non-atomic, going on past a failed operation) for one partition key range,
   * as the SDK's bulk sends it, with the session tokens when it reads. One try: a write is not
   * sent again blind.
   */
  private async bulk(ops: PointOperation[], rangeId: string): Promise<BulkAnswer> {
    const body = `[${ops.map(operationJson).join(',')}]`;
    const date = this.client.now().toUTCString();
    const headers: Record<string, string> = {
      'x-ms-date': date,
      'x-ms-version': COSMOS_API_VERSION,
      authorization: await this.client.authorization('POST', 'docs', this.link, date),
      'x-ms-cosmos-is-batch-request': 'true',
      'x-ms-cosmos-batch-atomic': 'false',
      'x-ms-cosmos-batch-continue-on-error': 'true',
      'x-ms-documentdb-partitionkeyrangeid': rangeId,
      accept: 'application/json',
      'cache-control': 'no-cache',
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(body)),
    };
    const session = ops.some((op) => op.kind === 'read') ? this.sessions.toString() : undefined;
    if (session !== undefined) headers['x-ms-session-token'] = session;
    let answer: Answer;
    try {
      answer = await this.client.send('POST', `/${encodeURI(this.link)}/docs`, headers, body);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException | null)?.code;
      throw new CosmosRequestError(`a bulk request failed: ${code ?? (e as Error | null)?.name ?? 'error'}`, { cause: e, ...(typeof code === 'string' ? { code } : {}) });
    }
    this.sessions.merge(headerOf(answer, 'x-ms-session-token'));
    if (answer.status < 200 || answer.status >= 300) return { refused: answer.status === 410 ? 'gone' : answer.status === 400 ? 'bad-request' : 'other' };
    let results: unknown;
    try {
      results = JSON.parse(answer.text);
    } catch {
      return { refused: 'other' };
    }
    if (!Array.isArray(results) || results.length !== ops.length) return { refused: 'other' };
    return { outcomes: ops.map((op, i) => operationOutcome(op, results[i] as BulkResult | null)) };
  }

  /** The ids of the container's partition key ranges (undefined when they take more than one page). */
  private async ranges(): Promise<string[] | undefined> {
    const date = this.client.now().toUTCString();
    const headers = {
      'x-ms-date': date,
      'x-ms-version': COSMOS_API_VERSION,
      authorization: await this.client.authorization('GET', 'pkranges', this.link, date),
      accept: 'application/json',
    };
    const answer = await this.client.send('GET', `/${encodeURI(this.link)}/pkranges`, headers, undefined);
    if (answer.status !== 200) throw new CosmosRequestError(`reading partition key ranges answered ${answer.status}`, { statusCode: answer.status });
    if (headerOf(answer, 'x-ms-continuation')) return undefined;
    const ranges = (JSON.parse(answer.text) as { PartitionKeyRanges?: { id?: unknown }[] }).PartitionKeyRanges;
    return Array.isArray(ranges) ? ranges.map((r) => String(r.id)) : undefined;
  }

  /** Replaces a document, only over `ifMatch` (412 otherwise; 404 when it is gone). Resolves with the new ETag. */
  async replace<T extends { id: string }>(doc: T, partitionKey: string, ifMatch: string): Promise<{ etag: string }> {
    const answer = await this.request({ method: 'PUT', link: this.docLink(doc.id), partitionKey, body: JSON.stringify(doc), ifMatch, what: 'replacing a document' });
    return { etag: etagOf(answer) };
  }

  /** Deletes a document, only over `ifMatch` when given (412 otherwise); 404 when there is none. */
  async delete(id: string, partitionKey: string, ifMatch?: string): Promise<void> {
    await this.request({ method: 'DELETE', link: this.docLink(id), partitionKey, ...(ifMatch !== undefined ? { ifMatch } : {}), what: 'deleting a document' });
  }

  /**
   * Runs a query within one partition, every page of it (the service's continuation token).
   * The gateway runs such a query without a plan: a projection, filters, and no aggregate,
   * ORDER BY, DISTINCT or TOP (which would need one across the pages). It is a read: its
   * retries and session tokens are a point read's.
   */
  async query<T>(spec: QuerySpec, partitionKey: string): Promise<T[]> {
    const body = JSON.stringify({ query: spec.query, parameters: spec.parameters ?? [] });
    const out: T[] = [];
    let continuation: string | undefined;
    do {
      const answer = await this.request({ method: 'POST', link: this.link, partitionKey, body, what: 'querying documents', query: { continuation } });
      const page = JSON.parse(answer.text) as { Documents?: T[] };
      if (!Array.isArray(page.Documents)) throw new CosmosRequestError('querying documents: the answer has no Documents', { statusCode: 500 });
      for (const doc of page.Documents) out.push(doc);
      continuation = headerOf(answer, 'x-ms-continuation') || undefined;
    } while (continuation !== undefined);
    return out;
  }

  private docLink(id: string): string {
    validateId(id);
    return `${this.link}/docs/${id}`;
  }

  /**
   * Sends one operation with its retries. Resolves with a 2xx answer, or with a 404 for a read
   * (the document is absent); rejects with a CosmosRequestError otherwise.
   */
  private async request(op: Operation): Promise<Answer> {
    const { method, link, body, what } = op;
    // A query is retried as a read is.
    const read = method === 'GET' || op.query !== undefined;
    let throttled = 0;
    let throttleWaitMs = 0;
    let sessionRetries = 0;
    for (let tries = 1; ; tries++) {
      // Outside the try: a credential that gives no token fails as it fails (as with the SDK).
      const headers = await this.headers(op, read);
      let answer: Answer;
      try {
        answer = await this.client.send(method, `/${encodeURI(link)}${method === 'POST' ? '/docs' : ''}`, headers, body);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException | null)?.code;
        if (read && tries < MAX_READ_TRIES && typeof code === 'string' && RETRIABLE_SOCKET_ERRORS.has(code)) {
          await delay(READ_RETRY_MS * tries);
          continue;
        }
        throw new CosmosRequestError(`${what} failed: ${code ?? (e as Error | null)?.name ?? 'error'}`, { cause: e, ...(typeof code === 'string' ? { code } : {}) });
      }
      this.sessions.merge(headerOf(answer, 'x-ms-session-token'));
      if (answer.status >= 200 && answer.status < 300) return answer;
      const substatus = Number(headerOf(answer, 'x-ms-substatus') ?? 0);
      if (answer.status === 429 && throttled < MAX_THROTTLE_RETRIES) {
        const wait = Number(headerOf(answer, 'x-ms-retry-after-ms') ?? 0) || 0;
        if (throttleWaitMs + wait <= MAX_THROTTLE_WAIT_MS) {
          throttled += 1;
          throttleWaitMs += wait;
          await delay(wait);
          continue;
        }
      }
      if (answer.status === 404 && substatus === READ_SESSION_NOT_AVAILABLE) {
        if (sessionRetries < MAX_SESSION_RETRIES) {
          sessionRetries += 1;
          await delay(SESSION_RETRY_BASE_MS * 2 ** sessionRetries);
          continue;
        }
        // Not "absent": the document may well be there. The tokens are dropped: a container
        // deleted and created again (catalog recovery, or by hand) starts its LSNs anew, and
        // tokens of the old one would be refused for good. The next try reads without them.
        this.sessions.clear();
        throw new CosmosRequestError(`${what}: the session's writes are not yet readable (404/1002)`, { statusCode: 503, substatus });
      }
      if (answer.status === 404 && method === 'GET') return answer;
      throw new CosmosRequestError(`${what} answered ${answer.status}${substatus ? `/${substatus}` : ''}${errorCodeOf(answer)}`, { statusCode: answer.status, ...(substatus ? { substatus } : {}) });
    }
  }

  private async headers(op: Operation, read: boolean): Promise<Record<string, string>> {
    const date = this.client.now().toUTCString();
    const headers: Record<string, string> = {
      'x-ms-date': date,
      'x-ms-version': COSMOS_API_VERSION,
      authorization: await this.client.authorization(op.method, 'docs', op.link, date),
      'x-ms-documentdb-partitionkey': JSON.stringify([op.partitionKey]),
      // The SDK sends this with every request; the local emulator server needs it on point reads.
      'x-ms-documentdb-query-enablecrosspartition': 'true',
      accept: 'application/json',
      'cache-control': 'no-cache',
    };
    if (op.body !== undefined) {
      headers['content-type'] = op.query ? 'application/query+json' : 'application/json';
      headers['content-length'] = String(Buffer.byteLength(op.body));
    }
    if (op.query) {
      headers['x-ms-documentdb-isquery'] = 'True';
      headers['x-ms-max-item-count'] = String(QUERY_PAGE_ITEMS);
      if (op.query.continuation !== undefined) headers['x-ms-continuation'] = op.query.continuation;
    }
    if (op.ifMatch !== undefined) headers['if-match'] = op.ifMatch;
    const session = read ? this.sessions.toString() : undefined;
    if (session !== undefined) headers['x-ms-session-token'] = session;
    return headers;
  }
}

/** One operation of a bulk request, as the SDK writes it. */
function operationJson(op: PointOperation): string {
  const partitionKey = JSON.stringify(JSON.stringify([op.partitionKey]));
  return op.kind === 'create'
    ? `{"operationType":"Create","partitionKey":${partitionKey},"resourceBody":${op.body}}`
    : `{"operationType":"Read","id":${JSON.stringify(op.id)},"partitionKey":${partitionKey}}`;
}

/** One operation's result in a bulk answer. */
interface BulkResult {
  statusCode?: number;
  subStatusCode?: number;
  eTag?: string;
  resourceBody?: { _etag?: string };
}

function operationOutcome(op: PointOperation, r: BulkResult | null): OperationOutcome {
  const status = r?.statusCode;
  if (op.kind === 'read') {
    if (status === 200 && r?.resourceBody?._etag) return { kind: 'done', result: { resource: r.resourceBody } };
    // Absent; but 404/1002 (this session's writes not yet at that replica) is read again alone.
    if (status === 404 && r?.subStatusCode !== READ_SESSION_NOT_AVAILABLE) return { kind: 'done', result: { resource: undefined } };
    return { kind: 'again' };
  }
  if (status === 201) {
    const etag = r?.eTag ?? r?.resourceBody?._etag;
    // Without its ETag a created document could not be replaced over it: sent alone, it meets 409.
    return etag ? { kind: 'done', result: { etag } } : { kind: 'again' };
  }
  if (status === 409) return { kind: 'failed', error: new CosmosRequestError('creating a document answered 409 Conflict', { statusCode: 409 }) };
  return { kind: 'again' };
}

/** Ids the REST paths cannot carry, as the SDK refuses them. */
function validateId(id: string): void {
  if (id.length === 0 || /[/\\?#]/.test(id)) throw new CosmosRequestError('a document id is empty or has a character a resource path cannot carry', { statusCode: 400 });
}

function headerOf(answer: Answer, name: string): string | undefined {
  const v = answer.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function etagOf(answer: Answer): string {
  return headerOf(answer, 'etag') ?? '';
}

/** The service's error code from the answer's body (`Conflict`, `PreconditionFailed`, ...), for the message. */
function errorCodeOf(answer: Answer): string {
  try {
    const code = (JSON.parse(answer.text) as { code?: unknown }).code;
    return typeof code === 'string' && /^[A-Za-z]{1,40}$/.test(code) ? ` ${code}` : '';
  } catch {
    return '';
  }
}
