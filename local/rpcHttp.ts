/**
 * The host's side of HTTP at the worker boundary: an incoming request becomes the RpcHttpData
 * that the Functions host sends the worker, and the RpcHttpData that @azure/functions returns
 * (`getResponse`) is written back as the HTTP response. What a handler sees and returns
 * (HttpRequest, HttpResponse or HttpResponseInit with jsonBody, cookies, streams) is converted
 * by the library itself, as in Azure.
 */
import type * as http from 'http';

import type { RpcHttpCookie, RpcTypedData } from './functionsCore';

/** The request as the worker receives it (not streamed: the body is read before the call). */
export function toRpcHttpRequest(method: string, url: URL, headers: http.IncomingHttpHeaders, params: Record<string, string>, body: Buffer): RpcTypedData {
  const flat: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined) flat[k] = Array.isArray(v) ? v.join(', ') : v;
  return { http: { method, url: url.toString(), headers: flat, params, body: body.length > 0 ? { bytes: body } : undefined } };
}

/** The bytes of a typed value, as the host reads a response body. */
function typedDataBytes(data: RpcTypedData | null | undefined): Buffer {
  if (!data) return Buffer.alloc(0);
  if (data.bytes) return Buffer.from(data.bytes.buffer, data.bytes.byteOffset, data.bytes.byteLength);
  if (typeof data.string === 'string') return Buffer.from(data.string, 'utf8');
  if (typeof data.json === 'string') return Buffer.from(data.json, 'utf8');
  if (typeof data.int === 'number') return Buffer.from(String(data.int));
  if (typeof data.double === 'number') return Buffer.from(String(data.double));
  return Buffer.alloc(0);
}

/** 'none' means not set; 'explicitNone' is SameSite=None. */
const SAME_SITE: Record<string, string | undefined> = { lax: 'Lax', strict: 'Strict', explicitNone: 'None' };

/** A Set-Cookie value from the library's RPC cookie. */
export function serializeRpcCookie(c: RpcHttpCookie): string {
  const parts = [`${c.name ?? ''}=${c.value ?? ''}`];
  if (c.domain?.value) parts.push(`Domain=${c.domain.value}`);
  if (c.path?.value) parts.push(`Path=${c.path.value}`);
  const expires = c.expires?.value;
  if (expires && typeof expires.seconds === 'number') parts.push(`Expires=${new Date(expires.seconds * 1000 + (expires.nanos ?? 0) / 1e6).toUTCString()}`);
  if (typeof c.maxAge?.value === 'number') parts.push(`Max-Age=${c.maxAge.value}`);
  if (c.secure?.value) parts.push('Secure');
  if (c.httpOnly?.value) parts.push('HttpOnly');
  const sameSite = c.sameSite ? SAME_SITE[c.sameSite] : undefined;
  if (sameSite) parts.push(`SameSite=${sameSite}`);
  return parts.join('; ');
}

const NO_BODY_STATUSES = new Set([204, 205, 304]);

/**
 * Writes an HTTP function's return value. Nothing returned: 204. Throws (before writing
 * anything) when the value is not an HTTP response.
 */
export function writeRpcHttpResponse(res: http.ServerResponse, returnValue: RpcTypedData | null | undefined): void {
  if (returnValue === null || returnValue === undefined) {
    res.writeHead(204);
    res.end();
    return;
  }
  const response = returnValue.http;
  if (!response) throw new Error('the HTTP function returned a value that is not an HTTP response');
  const status = Number(response.statusCode ?? '200');
  if (!Number.isInteger(status) || status < 100 || status > 999) throw new Error(`the HTTP function returned status "${response.statusCode}"`);
  const body = NO_BODY_STATUSES.has(status) ? Buffer.alloc(0) : typedDataBytes(response.body);
  res.statusCode = status;
  const cookies: string[] = [];
  for (const [k, v] of Object.entries(response.headers ?? {})) {
    if (k.toLowerCase() === 'set-cookie') cookies.push(v);
    else if (k.toLowerCase() !== 'content-length') res.setHeader(k, v);
  }
  cookies.push(...(response.cookies ?? []).map(serializeRpcCookie));
  if (cookies.length > 0) res.setHeader('set-cookie', cookies);
  if (!NO_BODY_STATUSES.has(status)) res.setHeader('content-length', body.length);
  res.end(body);
}
