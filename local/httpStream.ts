/**
 * HTTP streaming mode (`app.setup({ enableHttpStream: true })`), as the Functions host runs it:
 * the worker's library listens on the URI it reports as the `HttpUri` capability; the host
 * sends the invocation (route parameters and headers as trigger metadata) and forwards the
 * HTTP request itself to that URI with the header `x-ms-invocation-id`; the library gives the
 * handler that request and writes the handler's response (a stream, read as it is written)
 * onto the forwarded request's response, which the host pipes to the client. A response body
 * is then never held whole, in the worker or here.
 */
import * as http from 'http';

import type { RpcTypedData } from './functionsCore';

/** What createStreamRequest (@azure/functions) reads: `Headers` as JSON, each route parameter as a string. */
export function streamTriggerMetadata(headers: http.IncomingHttpHeaders, params: Record<string, string>): Record<string, RpcTypedData> {
  const flat: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined) flat[k] = Array.isArray(v) ? v.join(', ') : v;
  const metadata: Record<string, RpcTypedData> = { Headers: { json: JSON.stringify(flat) } };
  for (const [k, v] of Object.entries(params)) metadata[k] = { string: v };
  return metadata;
}

/** Headers of the worker's answer that belong to the hop between worker and host, not to the client. */
const HOP_HEADERS = new Set(['x-ms-invocation-id', 'connection', 'keep-alive', 'transfer-encoding']);

export interface ForwardedRequest {
  /** Resolves when the worker's answer has been piped to the client (or the client went away). */
  done: Promise<void>;
  /**
   * Resolves true once the worker has begun its answer, false when it has not within `ms`: the
   * library sends nothing for a handler that returned nothing (the caller then answers 204).
   */
  answered(ms: number): Promise<boolean>;
  /** Gives up the forwarded request (the invocation failed before answering). */
  abort(): void;
}

/**
 * The connections from the host to the worker's listener, kept open between requests (one
 * connection per request cost a DNS lookup of the worker's `localhost` and a TCP handshake each
 * time). An idle connection is closed before the listener's announced keep-alive time runs out
 * (Node's agent reads it from the `Keep-Alive` header, less a second; the agent's own timeout
 * must be set for that hint to apply), so a request never lands on a connection being closed.
 */
export function workerAgent(): http.Agent {
  return new http.Agent({ keepAlive: true, timeout: 60_000 });
}

/**
 * Forwards one request to the worker's HttpUri and pipes the answer to `res` with back
 * pressure (a slow client slows the reading of the worker's answer). Without `agent`, one
 * connection per request.
 */
export function forwardToWorker(workerUri: string, invocationId: string, req: http.IncomingMessage, url: URL, body: Buffer, res: http.ServerResponse, agent?: http.Agent): ForwardedRequest {
  const headers: http.OutgoingHttpHeaders = { ...req.headers, 'x-ms-invocation-id': invocationId, 'x-forwarded-host': url.host, 'x-forwarded-proto': url.protocol.replace(/:$/, '') };
  delete headers['transfer-encoding'];
  headers['content-length'] = String(body.length);
  const target = new URL(`${url.pathname}${url.search}`, workerUri);
  const outgoing = http.request(target, { method: req.method, headers, agent: agent ?? false });
  let started = false;
  const startedSignal = new Promise<void>((resolve) => outgoing.once('response', () => resolve()));
  const done = new Promise<void>((resolve) => {
    outgoing.on('response', (answer) => {
      started = true;
      const out: http.OutgoingHttpHeaders = {};
      for (const [k, v] of Object.entries(answer.headers)) if (v !== undefined && !HOP_HEADERS.has(k)) out[k] = v;
      res.writeHead(answer.statusCode ?? 500, out);
      answer.pipe(res);
      answer.on('error', () => res.destroy());
      res.on('close', () => {
        // The client went away: stop reading the worker's answer, so that the handler's stream ends.
        if (!answer.complete) answer.destroy();
        resolve();
      });
    });
    outgoing.on('error', () => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json; charset=utf-8' });
      res.end();
      resolve();
    });
  });
  outgoing.end(body);
  const answered = async (ms: number) => {
    if (started) return true;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    });
    const result = await Promise.race([startedSignal.then(() => true as const), late]);
    clearTimeout(timer);
    return result;
  };
  return { done, answered, abort: () => outgoing.destroy() };
}
