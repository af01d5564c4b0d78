/**
 * The HTTP client the Cosmos DB SDK sends its requests through (`CosmosClientOptions.httpClient`,
 * the SDK's own extension point): one node:http(s) request per call, its answer read whole as
 * text, which is all the SDK asks of a transport. Everything above the transport stays the
 * SDK's: signing (key or Entra ID token), session tokens, retries, endpoint discovery, timeouts.
 *
 * Why not the SDK's default transport: it is a general one (upload and download progress,
 * streamed bodies, decompression, a second abort controller, a header object rebuilt per
 * answer), and in a profile of the function host over a 1,000-slice burst it took about 9 % of
 * the host's CPU, with about five Cosmos DB requests per instance ingested. What the SDK sends
 * is a JSON text or nothing, and what it reads is `bodyAsText`: this client does that only.
 *
 * It keeps what the SDK relies on from a transport:
 * - the request's agent when the SDK gives one (it does, per endpoint), else a keep-alive agent;
 * - an abort of `request.abortSignal` (the SDK's own time-out, or the caller's) rejects with an
 *   AbortError, which the SDK tells apart from a failure;
 * - a socket failure rejects with a RestError carrying the socket's code (`ECONNRESET`, ...),
 *   which the SDK's retry policy reads; without one, `REQUEST_SEND_ERROR`;
 * - `allowInsecureConnection` is honoured: plain HTTP only where the SDK allows it; so is a
 *   request's own `timeout` (an abort when it passes), though the SDK times requests itself;
 * - a gzip or deflate answer is decoded (the SDK asks for neither; a proxy might send one).
 * Messages name neither the URL nor the document: an id can be a research UID.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import * as zlib from 'node:zlib';

import { createHttpHeaders, type HttpClient, type PipelineRequest, type PipelineResponse, RestError } from '@azure/core-rest-pipeline';

/** For a request that comes without the SDK's agent (the SDK gives one per endpoint). */
const agents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };

function abortError(): Error {
  const e = new Error('The operation was aborted.');
  e.name = 'AbortError';
  return e;
}

/** The request body as the SDK gives it: a JSON text, bytes, or nothing; anything else is refused. */
function bodyOf(request: PipelineRequest): string | Buffer | undefined {
  if (request.streamResponseStatusCodes?.size) throw new RestError('the Cosmos DB HTTP client reads answers whole, never as streams', { code: RestError.REQUEST_SEND_ERROR, request });
  const body = request.body;
  if (body === undefined || body === null) return undefined;
  if (typeof body === 'string' || Buffer.isBuffer(body)) return body;
  throw new RestError('the Cosmos DB HTTP client sends a text or bytes body only', { code: RestError.REQUEST_SEND_ERROR, request });
}

function decode(bytes: Buffer, encoding: string | undefined): string {
  if (encoding === 'gzip') return zlib.gunzipSync(bytes).toString('utf8');
  if (encoding === 'deflate') return zlib.inflateSync(bytes).toString('utf8');
  return bytes.toString('utf8');
}

export class CosmosHttpClient implements HttpClient {
  sendRequest(request: PipelineRequest): Promise<PipelineResponse> {
    return new Promise<PipelineResponse>((resolve, reject) => {
      const signal = request.abortSignal;
      if (signal?.aborted) return reject(abortError());
      let url: URL;
      let body: string | Buffer | undefined;
      try {
        url = new URL(request.url);
        body = bodyOf(request);
      } catch (e) {
        return reject(e);
      }
      const secure = url.protocol === 'https:';
      if (!secure && !request.allowInsecureConnection) {
        return reject(new RestError('plain HTTP to Cosmos DB is not allowed for this request', { code: RestError.REQUEST_SEND_ERROR, request }));
      }
      const headers: Record<string, string> = {};
      for (const [name, value] of request.headers) headers[name] = value;
      if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
      const agent = (request.agent as http.Agent | undefined) ?? (secure ? agents.https : agents.http);
      const options: http.RequestOptions = { method: request.method, headers, agent, hostname: url.hostname, port: url.port, path: `${url.pathname}${url.search}` };

      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const done = (fn: () => void) => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        if (timer) clearTimeout(timer);
        fn();
      };
      const onAbort = () => {
        req.destroy();
        done(() => reject(abortError()));
      };
      const req = (secure ? https : http).request(options, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', (e: NodeJS.ErrnoException) => done(() => reject(new RestError(`reading a Cosmos DB answer failed: ${e.message}`, { code: e.code ?? RestError.REQUEST_SEND_ERROR, request }))));
        res.on('end', () => {
          let text: string;
          try {
            text = decode(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks), res.headers['content-encoding']);
          } catch (e) {
            return done(() => reject(new RestError(`decoding a Cosmos DB answer failed: ${(e as Error).message}`, { code: RestError.PARSE_ERROR, request })));
          }
          const responseHeaders = createHttpHeaders();
          for (const [name, value] of Object.entries(res.headers)) {
            if (value === undefined) continue;
            responseHeaders.set(name, Array.isArray(value) ? (value[0] ?? '') : value);
          }
          done(() => resolve({ request, status: res.statusCode ?? 0, headers: responseHeaders, bodyAsText: request.method === 'HEAD' ? null : text }));
        });
      });
      req.on('error', (e: NodeJS.ErrnoException) => done(() => reject(new RestError(e.message, { code: e.code ?? RestError.REQUEST_SEND_ERROR, request }))));
      signal?.addEventListener('abort', onAbort);
      // The SDK times its requests itself (an abort); a request's own time-out is honoured too.
      if (request.timeout > 0) timer = setTimeout(onAbort, request.timeout);
      req.end(body);
    });
  }
}
