/**
 * CORS of the local function host, as the Function App's platform CORS does it in Azure: the
 * platform answers the preflight (`OPTIONS` with `Access-Control-Request-Method`) of an allowed
 * origin itself, before any function runs, and adds `Access-Control-Allow-Origin` to the
 * answers of every other request from that origin. The API's code has no CORS of its own: in
 * Azure the allowed origins are the Function App's CORS list (site configuration, not an app
 * setting); locally CORS_ALLOWED_ORIGINS names them.
 *
 * CORS_ALLOWED_ORIGINS: comma-separated origins (`https://viewer.example.org`), or `*`. Unset:
 * any http origin on a loopback address (127.0.0.1, localhost, [::1]) and any port, which
 * covers the viewer of `npm start` (http://127.0.0.1:7072) and the tests' viewers on free ports.
 * That is safe because the API's credentials are bearer tokens, which a browser never sends on
 * its own: CORS decides which pages may read answers, the token which callers get any.
 */
import type * as http from 'http';

/** Response headers beyond the CORS-safelisted ones that DICOMweb clients read. */
export const CORS_EXPOSED_HEADERS = ['Content-Range', 'Accept-Ranges', 'Content-Location', 'Location', 'Retry-After', 'Warning', 'ETag'];
const ALLOWED_METHODS = 'GET, HEAD, POST, PUT, PATCH, DELETE';
const DEFAULT_ALLOWED_HEADERS = 'Authorization, Accept, Content-Type, Range';
/** A header list as browsers send it in Access-Control-Request-Headers (tokens and commas only). */
const HEADER_LIST = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+(\s*,\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*$/;
const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

export type AllowedOrigins = { kind: 'any' } | { kind: 'loopback' } | { kind: 'list'; origins: Set<string> };

/** An origin as browsers send it: scheme, host and port only, lower case. Throws on anything else. */
function normalizeOrigin(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(`CORS_ALLOWED_ORIGINS: "${raw}" is not an origin (scheme://host[:port])`);
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.pathname.replace(/\/$/, '') !== '' || url.search || url.hash || url.username) {
    throw new Error(`CORS_ALLOWED_ORIGINS: "${raw}" is not an origin (scheme://host[:port])`);
  }
  return url.origin;
}

/** Reads CORS_ALLOWED_ORIGINS; throws naming the setting when an entry is not an origin. */
export function parseAllowedOrigins(raw: string | undefined): AllowedOrigins {
  const entries = (raw ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (entries.length === 0) return { kind: 'loopback' };
  if (entries.includes('*')) return { kind: 'any' };
  return { kind: 'list', origins: new Set(entries.map(normalizeOrigin)) };
}

export function isAllowedOrigin(allowed: AllowedOrigins, origin: string): boolean {
  if (allowed.kind === 'any') return true;
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false;
  }
  if (url.origin !== origin) return false;
  if (allowed.kind === 'loopback') return url.protocol === 'http:' && LOOPBACK_HOSTS.has(url.hostname);
  return allowed.origins.has(origin);
}

/**
 * Applies CORS to one request. Returns true when it answered it (a preflight of an allowed
 * origin); otherwise the request goes on, with the CORS headers already set on the response
 * when its origin is allowed. Requests of other origins get no CORS header: the browser then
 * refuses the page the answer, as in Azure.
 */
export function applyCors(allowed: AllowedOrigins, req: http.IncomingMessage, res: http.ServerResponse): boolean {
  const origin = req.headers.origin;
  if (typeof origin !== 'string' || !isAllowedOrigin(allowed, origin)) return false;
  const requestedMethod = req.headers['access-control-request-method'];
  if (req.method === 'OPTIONS' && typeof requestedMethod === 'string') {
    const requestedHeaders = req.headers['access-control-request-headers'];
    res.writeHead(204, {
      'access-control-allow-origin': origin,
      'access-control-allow-methods': ALLOWED_METHODS,
      'access-control-allow-headers': typeof requestedHeaders === 'string' && HEADER_LIST.test(requestedHeaders.trim()) ? requestedHeaders.trim() : DEFAULT_ALLOWED_HEADERS,
      'access-control-max-age': '600',
      vary: 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers',
      'content-length': 0,
    });
    res.end();
    return true;
  }
  res.setHeader('access-control-allow-origin', origin);
  res.setHeader('access-control-expose-headers', CORS_EXPOSED_HEADERS.join(', '));
  res.setHeader('vary', 'Origin');
  return false;
}
