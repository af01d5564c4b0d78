/**
 * Get Blob and Put Blob over plain `node:http(s)`: the storage requests on the hot paths (a
 * frame, a bulk data value or an instance of the research archive read; the head and the rest
 * of a source file read; a research copy of up to 4 MiB written).
 *
 * Why not the storage SDK there: its request pipeline (operation spec, tracing, header
 * (de)serialisation, a retriable stream wrapper) cost 0.9 ms of CPU per 512 KB Get Blob and
 * 0.78 ms per Put Blob, against 0.57 and 0.56 ms here (docs/performance.md, 0.11.0), and a
 * frame request or an ingestion has little else to do. Every other request (block staging and
 * commits, properties, tags, listings, deletes) stays on the SDK.
 *
 * What it does, as the SDK clients it replaces were configured (blobServiceClient):
 * - authorises as the service client does: Shared Key (an account key), a bearer token from the
 *   client's TokenCredential (a managed identity in Azure; cached until two minutes before it
 *   expires), or the SAS or anonymous access of the client's URL;
 * - retries a request that fails before its response (a network error, a timeout, 408, 429 or
 *   5xx) up to 3 tries, with exponential backoff and jitter; a try that gets no response
 *   headers in 60 s is ended (a body is read at its consumer's pace); a Put Blob's body is sent
 *   again whole (it is kept in memory);
 * - resumes a body broken after its response started, from the byte reached and only from the
 *   same version (If-Match its ETag), up to 3 times;
 * - keeps connections alive, one agent per scheme.
 * Failures are `BlobHttpError`s with the service's status and error code, or with the socket's
 * error code when no answer came; an abort stays the caller's AbortError. The stores classify
 * them as they classified the SDK's (`statusCode`, `code`, `name`: shared/errors.ts). A Put Blob retried after a try whose answer
 * was lost can meet its own write: 409 or 412 on its condition, which the research store's
 * conflict handling reads back (the SDK's retries behave the same way). No message names a blob:
 * a source file's path may carry a patient's name. Environment proxy settings are not used:
 * the service is reached directly, as Functions reach storage in Azure.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { setTimeout as delay } from 'node:timers/promises';

import type { TokenCredential } from '@azure/core-auth';
import { type BlobServiceClient, StorageSharedKeyCredential } from '@azure/storage-blob';

import { TokenCache } from '../tokenCache';

/** The storage service version sent; Azure and Azurite 3.35 both serve it. */
export const BLOB_API_VERSION = '2025-11-05';

const STORAGE_SCOPE = 'https://storage.azure.com/.default';
const MAX_TRIES = 3;
const RETRY_BASE_MS = 200;
const RETRY_MAX_MS = 10_000;
const TRY_TIMEOUT_MS = 60_000;
const MAX_RESUMES = 3;
/** An error response's body is read up to this many bytes, for its error code. */
const ERROR_BODY_MAX = 16 * 1024;

const RETRIABLE_STATUS = new Set([408, 429, 500, 502, 503, 504]);

/** A request that failed: the service's status and error code, or the network error as its cause. */
export class BlobHttpError extends Error {
  readonly statusCode?: number;
  /** The service's error code (`BlobNotFound`, `ConditionNotMet`, ...), or the socket's (`ECONNRESET`, ...) when there was no answer. */
  readonly code?: string;

  constructor(message: string, options: { statusCode?: number; code?: string; cause?: unknown } = {}) {
    super(message, options.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'BlobHttpError';
    if (options.statusCode !== undefined) this.statusCode = options.statusCode;
    if (options.code !== undefined) this.code = options.code;
  }
}

export interface BlobGetOptions {
  /** The first byte; 0 by default. */
  offset?: number;
  /** How many bytes from `offset`; to the end when absent. */
  count?: number;
  /** Only this version (an ETag); 412 otherwise. */
  ifMatch?: string;
  abortSignal?: AbortSignal;
}

export interface BlobPutOptions {
  /** The blob's Content-Type. */
  contentType?: string;
  /** Names in lower case; values ASCII. */
  metadata?: Record<string, string>;
  /** Index tags. */
  tags?: Record<string, string>;
  /** Only over this version (an ETag); 412 otherwise. */
  ifMatch?: string;
  /** `*`: only where no blob is (409 otherwise). */
  ifNoneMatch?: string;
  abortSignal?: AbortSignal;
}

export interface BlobGetResponse {
  status: number;
  etag?: string;
  contentLength?: number;
  /** `bytes a-b/total` for a ranged read. */
  contentRange?: string;
  contentType?: string;
  lastModified?: Date;
  /** The blob's metadata, names in lower case. */
  metadata: Record<string, string>;
  /** The bytes; a break in them is resumed from the same version before it is an error. */
  body: BlobBody;
}

/** The bytes of a response. */
export interface BlobBody extends AsyncIterable<Buffer> {
  /** Ends the read and closes its connection. */
  destroy(): void;
  /** Reads the rest and drops it, so that the connection can be used again (a body not iterated). */
  discard(): void;
}

/** How a request is authorised. */
export type BlobAuth =
  | { kind: 'sharedKey'; credential: StorageSharedKeyCredential }
  | { kind: 'bearer'; credential: TokenCredential }
  /** A SAS in the URL's query, or public access. */
  | { kind: 'url' };

function isTokenCredential(c: unknown): c is TokenCredential {
  return typeof (c as { getToken?: unknown } | null)?.getToken === 'function';
}

/** Encodes a blob name for a URL path: each segment, the slashes kept. */
export function encodeBlobPath(name: string): string {
  return name.split('/').map(encodeURIComponent).join('/');
}

/**
 * The Shared Key string to sign (Authorize with Shared Key, service version 2015-02-21 and
 * later): the verb, the eleven standard headers (an empty line for each one absent, and for a
 * zero Content-Length), the `x-ms-` headers sorted, and the resource with its query parameters
 * sorted. `headers` are named in lower case.
 */
export function sharedKeyStringToSign(method: string, accountName: string, url: URL, headers: Record<string, string>): string {
  const length = headers['content-length'];
  const standard = [
    headers['content-encoding'],
    headers['content-language'],
    length === '0' ? '' : length,
    headers['content-md5'],
    headers['content-type'],
    headers.date,
    headers['if-modified-since'],
    headers['if-match'],
    headers['if-none-match'],
    headers['if-unmodified-since'],
    headers.range,
  ].map((v) => v ?? '');
  const msHeaders = Object.keys(headers)
    .filter((h) => h.startsWith('x-ms-'))
    .sort()
    .map((h) => `${h}:${String(headers[h]).trim()}\n`)
    .join('');
  const byName = new Map<string, string[]>();
  for (const [name, value] of url.searchParams) {
    const key = name.toLowerCase();
    byName.set(key, [...(byName.get(key) ?? []), value]);
  }
  const query = [...byName.keys()]
    .sort()
    .map((k) => `\n${k}:${(byName.get(k) ?? []).sort().join(',')}`)
    .join('');
  return `${method}\n${standard.join('\n')}\n${msHeaders}/${accountName}${url.pathname}${query}`;
}

const sharedAgents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };

/** Get Blob and Put Blob for the containers of one storage account (one service client). */
export class BlobHttp {
  private readonly base: URL;
  private readonly tokens?: TokenCache;

  /**
   * `agents` replaces the shared keep-alive agents, for a service behind a certificate of a
   * private authority (its `ca`); the default trusts Node's own authorities.
   */
  constructor(
    serviceUrl: string,
    private readonly auth: BlobAuth,
    private readonly agents: { http: http.Agent; https: https.Agent } = sharedAgents,
  ) {
    this.base = new URL(serviceUrl);
    if (!this.base.pathname.endsWith('/')) this.base.pathname += '/';
    if (auth.kind === 'bearer') this.tokens = new TokenCache(auth.credential, [STORAGE_SCOPE], 'storage');
  }

  /** A client that authorises as `client` does (its URL, and its credential). */
  static of(client: BlobServiceClient): BlobHttp {
    const credential: unknown = client.credential;
    const auth: BlobAuth =
      credential instanceof StorageSharedKeyCredential
        ? { kind: 'sharedKey', credential }
        : isTokenCredential(credential)
          ? { kind: 'bearer', credential }
          : { kind: 'url' };
    return new BlobHttp(client.url, auth);
  }

  /** The URL of a blob (with the service URL's query, a SAS when it has one). */
  urlOf(container: string, blobName: string): URL {
    const url = new URL(`${encodeURIComponent(container)}/${encodeBlobPath(blobName)}`, this.base);
    url.search = this.base.search;
    return url;
  }

  /**
   * Reads a blob or a range of it. Resolves on the response's headers with a status of 200 or
   * 206; any other status rejects with a BlobHttpError (416 for a range past the end).
   */
  async get(container: string, blobName: string, options: BlobGetOptions = {}): Promise<BlobGetResponse> {
    const url = this.urlOf(container, blobName);
    const first = await this.tryRequest(url, options, [200, 206], () => this.send('GET', url, getHeaders(options), undefined, options.abortSignal));
    const etag = headerOf(first, 'etag');
    const length = numberOf(headerOf(first, 'content-length'));
    // A known length and version can be resumed; otherwise a break is an error.
    const resume =
      length !== undefined && etag !== undefined
        ? (received: number) =>
            this.tryRequest(url, options, [200, 206], () =>
              this.send('GET', url, getHeaders({ offset: (options.offset ?? 0) + received, count: length - received, ifMatch: etag }), undefined, options.abortSignal),
            )
        : undefined;
    return {
      status: first.statusCode ?? 0,
      etag,
      contentLength: length,
      contentRange: headerOf(first, 'content-range'),
      contentType: headerOf(first, 'content-type'),
      lastModified: dateOf(headerOf(first, 'last-modified')),
      metadata: metadataOf(first.headers),
      body: resumable(first, resume ? length : undefined, options.abortSignal, resume),
    };
  }

  /**
   * Writes a block blob in one request (Put Blob) from `chunks`, `size` bytes in all, under the
   * conditions given. Resolves with the new version's ETag.
   */
  async put(container: string, blobName: string, chunks: readonly Uint8Array[], size: number, options: BlobPutOptions = {}): Promise<{ etag: string }> {
    const url = this.urlOf(container, blobName);
    const headers: Record<string, string> = { 'x-ms-blob-type': 'BlockBlob', 'content-length': String(size) };
    if (options.contentType !== undefined) headers['x-ms-blob-content-type'] = options.contentType;
    for (const [name, value] of Object.entries(options.metadata ?? {})) headers[`x-ms-meta-${name.toLowerCase()}`] = value;
    const tags = Object.entries(options.tags ?? {});
    if (tags.length > 0) headers['x-ms-tags'] = tags.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
    if (options.ifMatch !== undefined) headers['if-match'] = options.ifMatch;
    if (options.ifNoneMatch !== undefined) headers['if-none-match'] = options.ifNoneMatch;
    const response = await this.tryRequest(url, options, [201], () => this.send('PUT', url, { ...headers }, chunks, options.abortSignal));
    response.resume();
    return { etag: headerOf(response, 'etag') ?? '' };
  }

  /** Sends a request, retrying what a retry may cure; resolves on one of the `ok` statuses. */
  private async tryRequest(url: URL, options: { abortSignal?: AbortSignal }, ok: readonly number[], send: () => Promise<http.IncomingMessage>): Promise<http.IncomingMessage> {
    for (let attempt = 1; ; attempt++) {
      let response: http.IncomingMessage;
      try {
        response = await send();
      } catch (e) {
        // An abort is the caller's: its AbortError goes out as it came (the stores map it as a time-out).
        if (options.abortSignal?.aborted) throw e;
        if (attempt >= MAX_TRIES) throw e instanceof BlobHttpError ? e : networkError('blob request failed', e);
        await backoff(attempt, options.abortSignal);
        continue;
      }
      const status = response.statusCode ?? 0;
      if (ok.includes(status)) return response;
      const failure = await errorOf(response);
      if (!RETRIABLE_STATUS.has(status) || attempt >= MAX_TRIES) throw failure;
      await backoff(attempt, options.abortSignal);
    }
  }

  /** One try: the date and version set, the request authorised and sent with its body. */
  private async send(method: 'GET' | 'PUT', url: URL, headers: Record<string, string>, body: readonly Uint8Array[] | undefined, abortSignal: AbortSignal | undefined): Promise<http.IncomingMessage> {
    headers['x-ms-date'] = new Date().toUTCString();
    headers['x-ms-version'] = BLOB_API_VERSION;
    if (this.auth.kind === 'sharedKey') {
      const { credential } = this.auth;
      headers.authorization = `SharedKey ${credential.accountName}:${credential.computeHMACSHA256(sharedKeyStringToSign(method, credential.accountName, url, headers))}`;
    } else if (this.tokens) {
      headers.authorization = `Bearer ${await this.tokens.get(abortSignal)}`;
    }
    const secure = url.protocol === 'https:';
    return new Promise((resolve, reject) => {
      const request = (secure ? https : http).request(url, { method, headers, agent: secure ? this.agents.https : this.agents.http, signal: abortSignal }, (response) => {
        // The limit is on the answer's headers; a body is read at its consumer's pace (the caller's abort ends it).
        request.setTimeout(0);
        resolve(response);
      });
      request.setTimeout(TRY_TIMEOUT_MS, () => request.destroy(Object.assign(new Error('no response in time'), { code: 'ETIMEDOUT' })));
      request.on('error', reject);
      for (const chunk of body ?? []) request.write(chunk);
      request.end();
    });
  }
}

/** The headers of a Get Blob: its range and its condition. */
function getHeaders(options: BlobGetOptions): Record<string, string> {
  const headers: Record<string, string> = {};
  const offset = options.offset ?? 0;
  if (offset > 0 || options.count !== undefined) headers['x-ms-range'] = `bytes=${offset}-${options.count !== undefined ? offset + options.count - 1 : ''}`;
  if (options.ifMatch !== undefined) headers['if-match'] = options.ifMatch;
  return headers;
}

/**
 * The body of a response of `length` bytes: when it breaks before its end, the rest is asked
 * for again (`resume(received)`), up to MAX_RESUMES times. Without `resume`, a break is an error.
 */
function resumable(
  first: http.IncomingMessage,
  length: number | undefined,
  abortSignal: AbortSignal | undefined,
  resume?: (received: number) => Promise<http.IncomingMessage>,
): BlobBody {
  let current = first;
  let received = 0;
  async function* bytes(): AsyncGenerator<Buffer> {
    for (let resumes = 0; ; resumes++) {
      try {
        for await (const chunk of current) {
          received += (chunk as Buffer).length;
          yield chunk as Buffer;
        }
        if (length === undefined || received >= length) return;
        // A premature close, as Node names one: a network failure, which a later try may not meet.
        throw new BlobHttpError(`blob read ended after ${received} of ${length} bytes`, { code: 'ERR_STREAM_PREMATURE_CLOSE' });
      } catch (e) {
        current.destroy();
        if (abortSignal?.aborted) throw e;
        if (!resume || resumes >= MAX_RESUMES) throw e instanceof BlobHttpError ? e : networkError('blob read broke off', e);
        current = await resume(received);
      }
    }
  }
  return {
    [Symbol.asyncIterator]: bytes,
    destroy: () => current.destroy(),
    discard: () => current.resume(),
  };
}

async function backoff(attempt: number, abortSignal?: AbortSignal): Promise<void> {
  const ms = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 4 ** (attempt - 1)) * (0.8 + Math.random() * 0.4);
  await delay(ms, undefined, abortSignal ? { signal: abortSignal } : {});
}

/**
 * A failure without an answer from the service, with the socket's error code (ECONNRESET,
 * ETIMEDOUT, ...) as its own `code`, as the stores' error mapping reads it (shared/errors.ts).
 */
function networkError(what: string, cause: unknown): BlobHttpError {
  const code = (cause as NodeJS.ErrnoException | null)?.code;
  return new BlobHttpError(`${what}: ${code ?? (cause as Error | null)?.name ?? 'error'}`, { cause, ...(typeof code === 'string' ? { code } : {}) });
}

/** The error of a response that is not a 200 or 206, with the service's error code. */
async function errorOf(response: http.IncomingMessage): Promise<BlobHttpError> {
  const status = response.statusCode ?? 0;
  let body = '';
  try {
    for await (const chunk of response) {
      if (body.length < ERROR_BODY_MAX) body += (chunk as Buffer).toString('utf8');
    }
  } catch {
    // The code is taken from the header then.
  }
  const code = headerOf(response, 'x-ms-error-code') ?? /<Code>([^<]+)<\/Code>/.exec(body)?.[1];
  return new BlobHttpError(`blob request answered ${status}${code ? ` ${code}` : ''}`, { statusCode: status, ...(code ? { code } : {}) });
}

function headerOf(response: http.IncomingMessage, name: string): string | undefined {
  const v = response.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function numberOf(v: string | undefined): number | undefined {
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
}

function dateOf(v: string | undefined): Date | undefined {
  const d = v ? new Date(v) : undefined;
  return d && !Number.isNaN(d.getTime()) ? d : undefined;
}

function metadataOf(headers: http.IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (name.startsWith('x-ms-meta-') && value !== undefined) out[name.slice('x-ms-meta-'.length)] = Array.isArray(value) ? value.join(',') : value;
  }
  return out;
}
