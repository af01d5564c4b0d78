/**
 * Get Blob over plain `node:http(s)`: the one storage request on the hot read paths (a frame,
 * a bulk data value, an instance of the research archive; the head of a source file).
 *
 * Why not the storage SDK here: its request pipeline (operation spec, tracing, header
 * deserialisation, a retriable stream wrapper) costs 0.6-1.7 ms of CPU per Get Blob on this
 * machine, as much as the rest of a frame request (docs/performance.md, 0.10.4 and 0.11.0). Every
 * other request (writes, properties, tags, listings) stays on the SDK.
 *
 * What it does, as the SDK clients it replaces were configured (blobServiceClient):
 * - authorises as the service client does: Shared Key (an account key), a bearer token from the
 *   client's TokenCredential (a managed identity in Azure; cached until two minutes before it
 *   expires), or the SAS or anonymous access of the client's URL;
 * - retries a request that fails before its response (a network error, a timeout, 408, 429 or
 *   5xx) up to 3 tries, with exponential backoff and jitter; a try that gets no response
 *   headers in 60 s is ended;
 * - resumes a body broken after its response started, from the byte reached and only from the
 *   same version (If-Match its ETag), up to 3 times;
 * - keeps connections alive, one agent per scheme.
 * Failures are `BlobGetError`s with the service's status and error code, so that the stores map
 * them as they map the SDK's (`statusCode`, `code`). Environment proxy settings are not used:
 * the service is reached directly, as Functions reach storage in Azure.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { setTimeout as delay } from 'node:timers/promises';

import type { AccessToken, TokenCredential } from '@azure/core-auth';
import { type BlobServiceClient, StorageSharedKeyCredential } from '@azure/storage-blob';

/** The storage service version sent; Azure and Azurite 3.35 both serve it. */
export const BLOB_API_VERSION = '2025-11-05';

const STORAGE_SCOPE = 'https://storage.azure.com/.default';
const MAX_TRIES = 3;
const RETRY_BASE_MS = 200;
const RETRY_MAX_MS = 10_000;
const TRY_TIMEOUT_MS = 60_000;
const MAX_RESUMES = 3;
/** A token is renewed this long before it expires. */
const TOKEN_REFRESH_MARGIN_MS = 2 * 60_000;
/** An error response's body is read up to this many bytes, for its error code. */
const ERROR_BODY_MAX = 16 * 1024;

const RETRIABLE_STATUS = new Set([408, 429, 500, 502, 503, 504]);

/** A Get Blob that failed: the service's status and error code, or the network error as its cause. */
export class BlobGetError extends Error {
  readonly statusCode?: number;
  /** The service's error code (`BlobNotFound`, `ConditionNotMet`, ...). */
  readonly code?: string;

  constructor(message: string, options: { statusCode?: number; code?: string; cause?: unknown } = {}) {
    super(message, options.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'BlobGetError';
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

/** Bearer tokens for one credential, renewed before they expire; one renewal at a time. */
class TokenCache {
  private token?: AccessToken;
  private pending?: Promise<AccessToken>;

  constructor(private readonly credential: TokenCredential) {}

  async get(abortSignal?: AbortSignal): Promise<string> {
    const now = Date.now();
    if (this.token && this.token.expiresOnTimestamp - now > TOKEN_REFRESH_MARGIN_MS && (this.token.refreshAfterTimestamp ?? Infinity) > now) return this.token.token;
    this.pending ??= this.credential
      .getToken(STORAGE_SCOPE, abortSignal ? { abortSignal } : {})
      .then((t) => {
        if (!t) throw new BlobGetError('the storage credential gave no token');
        this.token = t;
        return t;
      })
      .finally(() => (this.pending = undefined));
    try {
      return (await this.pending).token;
    } catch (e) {
      // A token not yet expired is still good when its renewal fails.
      if (this.token && this.token.expiresOnTimestamp > Date.now()) return this.token.token;
      throw e;
    }
  }
}

/** Encodes a blob name for a URL path: each segment, the slashes kept. */
export function encodeBlobPath(name: string): string {
  return name.split('/').map(encodeURIComponent).join('/');
}

/**
 * The Shared Key string to sign of a Get Blob (Authorize with Shared Key, service version
 * 2015-02-21 and later): the verb, eleven standard headers of which a GET has only If-Match,
 * the `x-ms-` headers sorted, and the resource with its query parameters sorted.
 */
export function sharedKeyStringToSign(accountName: string, url: URL, headers: Record<string, string>): string {
  const standard = ['', '', '', '', '', '', '', headers['if-match'] ?? '', '', '', ''];
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
  return `GET\n${standard.join('\n')}\n${msHeaders}/${accountName}${url.pathname}${query}`;
}

const agents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };

/** Get Blob for the containers of one storage account (one service client). */
export class BlobGetter {
  private readonly base: URL;
  private readonly tokens?: TokenCache;

  constructor(
    serviceUrl: string,
    private readonly auth: BlobAuth,
  ) {
    this.base = new URL(serviceUrl);
    if (!this.base.pathname.endsWith('/')) this.base.pathname += '/';
    if (auth.kind === 'bearer') this.tokens = new TokenCache(auth.credential);
  }

  /** The getter that authorises as `client` does (its URL, and its credential). */
  static of(client: BlobServiceClient): BlobGetter {
    const credential: unknown = client.credential;
    const auth: BlobAuth =
      credential instanceof StorageSharedKeyCredential
        ? { kind: 'sharedKey', credential }
        : isTokenCredential(credential)
          ? { kind: 'bearer', credential }
          : { kind: 'url' };
    return new BlobGetter(client.url, auth);
  }

  /** The URL of a blob (with the service URL's query, a SAS when it has one). */
  urlOf(container: string, blobName: string): URL {
    const url = new URL(`${encodeURIComponent(container)}/${encodeBlobPath(blobName)}`, this.base);
    url.search = this.base.search;
    return url;
  }

  /**
   * Reads a blob or a range of it. Resolves on the response's headers with a status of 200 or
   * 206; any other status rejects with a BlobGetError (416 for a range past the end).
   */
  async get(container: string, blobName: string, options: BlobGetOptions = {}): Promise<BlobGetResponse> {
    const url = this.urlOf(container, blobName);
    const first = await this.tryRequest(url, options);
    const etag = headerOf(first, 'etag');
    const response: BlobGetResponse = {
      status: first.statusCode ?? 0,
      etag,
      contentLength: numberOf(headerOf(first, 'content-length')),
      contentRange: headerOf(first, 'content-range'),
      contentType: headerOf(first, 'content-type'),
      lastModified: dateOf(headerOf(first, 'last-modified')),
      metadata: metadataOf(first.headers),
      body: resumable(first, undefined, options.abortSignal),
    };
    const length = response.contentLength;
    if (length !== undefined && etag !== undefined) {
      response.body = resumable(first, length, options.abortSignal, (received) =>
        this.tryRequest(url, { ...options, offset: (options.offset ?? 0) + received, count: length - received, ifMatch: etag }),
      );
    }
    return response;
  }

  /** Sends the request, retrying what a retry may cure; resolves on a 200 or 206. */
  private async tryRequest(url: URL, options: BlobGetOptions): Promise<http.IncomingMessage> {
    for (let attempt = 1; ; attempt++) {
      let response: http.IncomingMessage;
      try {
        response = await this.send(url, options);
      } catch (e) {
        if (options.abortSignal?.aborted || attempt >= MAX_TRIES) throw e instanceof BlobGetError ? e : new BlobGetError(`get blob: ${(e as Error).message}`, { cause: e });
        await backoff(attempt, options.abortSignal);
        continue;
      }
      const status = response.statusCode ?? 0;
      if (status === 200 || status === 206) return response;
      const failure = await errorOf(response);
      if (!RETRIABLE_STATUS.has(status) || attempt >= MAX_TRIES) throw failure;
      await backoff(attempt, options.abortSignal);
    }
  }

  private async send(url: URL, options: BlobGetOptions): Promise<http.IncomingMessage> {
    const headers: Record<string, string> = {
      'x-ms-date': new Date().toUTCString(),
      'x-ms-version': BLOB_API_VERSION,
    };
    const offset = options.offset ?? 0;
    if (offset > 0 || options.count !== undefined) headers['x-ms-range'] = `bytes=${offset}-${options.count !== undefined ? offset + options.count - 1 : ''}`;
    if (options.ifMatch !== undefined) headers['if-match'] = options.ifMatch;
    if (this.auth.kind === 'sharedKey') {
      const { credential } = this.auth;
      headers.authorization = `SharedKey ${credential.accountName}:${credential.computeHMACSHA256(sharedKeyStringToSign(credential.accountName, url, headers))}`;
    } else if (this.tokens) {
      headers.authorization = `Bearer ${await this.tokens.get(options.abortSignal)}`;
    }
    const secure = url.protocol === 'https:';
    return new Promise((resolve, reject) => {
      const request = (secure ? https : http).request(url, { method: 'GET', headers, agent: secure ? agents.https : agents.http, signal: options.abortSignal }, resolve);
      request.setTimeout(TRY_TIMEOUT_MS, () => request.destroy(Object.assign(new Error('no response in time'), { code: 'ETIMEDOUT' })));
      request.on('error', reject);
      request.end();
    });
  }
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
        throw new BlobGetError(`get blob: the response ended after ${received} of ${length} bytes`);
      } catch (e) {
        current.destroy();
        if (!resume || resumes >= MAX_RESUMES || abortSignal?.aborted) throw e instanceof BlobGetError ? e : new BlobGetError(`get blob: ${(e as Error).message}`, { cause: e });
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

/** The error of a response that is not a 200 or 206, with the service's error code. */
async function errorOf(response: http.IncomingMessage): Promise<BlobGetError> {
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
  return new BlobGetError(`get blob: ${status}${code ? ` ${code}` : ''}`, { statusCode: status, ...(code ? { code } : {}) });
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
