/**
 * HTTP streaming mode (`app.setup({ enableHttpStream: true })`), as the Functions host runs it:
 * the worker's library listens on the URI it reports as the `HttpUri` capability; the host
 * sends the invocation (route parameters and headers as trigger metadata) and forwards the
 * HTTP request itself to that listener, marked with the header `x-ms-invocation-id`; the library
 * gives the handler that request and writes the handler's response (a stream, read as it is
 * written) onto the forwarded request's response. A response body is then never held whole.
 *
 * In Azure the host is another process and forwards over HTTP. This local host runs in the
 * worker's process, so it gives the request to the listener's own handler (handToWorker) with
 * the client's response: the same library code runs, without a loopback hop that copied every
 * byte of an answer twice more.
 */
import * as http from 'http';
import { Readable } from 'stream';

import type { RpcTypedData } from './functionsCore';

/** What createStreamRequest (@azure/functions) reads: `Headers` as JSON, each route parameter as a string. */
export function streamTriggerMetadata(headers: http.IncomingHttpHeaders, params: Record<string, string>): Record<string, RpcTypedData> {
  const flat: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined) flat[k] = Array.isArray(v) ? v.join(', ') : v;
  const metadata: Record<string, RpcTypedData> = { Headers: { json: JSON.stringify(flat) } };
  for (const [k, v] of Object.entries(params)) metadata[k] = { string: v };
  return metadata;
}

/** Headers of the hop between worker and host, not the client's. */
const HOP_HEADERS = new Set(['x-ms-invocation-id', 'connection', 'keep-alive', 'transfer-encoding']);

/**
 * Gives one request to the worker's listener in this process: the listener's own request
 * handler gets a message carrying the forwarded request (its headers with the invocation id and
 * `x-forwarded-*`, its URL and method, its body as a stream) and the client's own response, onto
 * which the library writes the handler's answer. In Azure the Functions host is another process
 * and forwards over HTTP; here host and worker share one, and the loopback hop only copied every
 * byte of an answer twice more (a 512 KiB frame cost the host 8-10 ms more through the hop than
 * called in process). Headers of the hop (`x-ms-invocation-id`) are kept off the response.
 */
export function handToWorker(listener: http.Server, invocationId: string, req: http.IncomingMessage, url: URL, body: Buffer, res: http.ServerResponse): HandedRequest {
  const headers: http.IncomingHttpHeaders = { ...req.headers, 'x-ms-invocation-id': invocationId, 'x-forwarded-host': url.host, 'x-forwarded-proto': url.protocol.replace(/:$/, '') };
  delete headers['transfer-encoding'];
  headers['content-length'] = String(body.length);
  const message = Object.assign(Readable.from(body.length > 0 ? [body] : []), { headers, method: req.method, url: `${url.pathname}${url.search}` });
  const setHeader = res.setHeader.bind(res);
  res.setHeader = ((name: string, value: number | string | readonly string[]) => {
    const lower = name.toLowerCase();
    if (!HOP_HEADERS.has(lower)) return setHeader(name, value);
    // Set and taken off again: what watches the invocation id being set on a response (the app's
    // flow control, functions/httpBackpressure.ts) sees it as it does behind the Functions host.
    if (lower === 'x-ms-invocation-id') {
      setHeader(name, value);
      res.removeHeader(name);
    }
    return res;
  }) as typeof res.setHeader;
  const done = new Promise<void>((resolve) => res.once('close', () => resolve()));
  listener.emit('request', message, res);
  return { done, answered: () => res.headersSent || res.writableEnded };
}

export interface HandedRequest {
  /** Resolves when the answer has gone to the client (or the client went away). */
  done: Promise<void>;
  /**
   * Whether the library began an answer. The library writes the answer within the invocation, so
   * once the invocation has ended, false means the handler returned nothing (the caller answers 204).
   */
  answered(): boolean;
}
