/**
 * The local host's CORS (local/cors.ts), as the Function App's platform CORS answers: the
 * allowed origins from CORS_ALLOWED_ORIGINS, loopback origins when it is unset.
 */
import * as http from 'http';
import type { AddressInfo } from 'net';

import { applyCors, isAllowedOrigin, parseAllowedOrigins } from '../../../local/cors';
import { closeServer } from '../../../local/net';

/** A server that applies CORS and otherwise answers 200 "ok", as a function would. */
async function serve(raw: string | undefined): Promise<{ url: string; close: () => Promise<void> }> {
  const allowed = parseAllowedOrigins(raw);
  const server = http.createServer((req, res) => {
    if (applyCors(allowed, req, res)) return;
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => closeServer(server) };
}

describe('CORS_ALLOWED_ORIGINS', () => {
  test('given nothing set, then loopback http origins on any port, and nothing else', () => {
    const allowed = parseAllowedOrigins(undefined);
    expect(isAllowedOrigin(allowed, 'http://127.0.0.1:7072')).toBe(true);
    expect(isAllowedOrigin(allowed, 'http://localhost:3000')).toBe(true);
    expect(isAllowedOrigin(allowed, 'http://[::1]:8080')).toBe(true);
    expect(isAllowedOrigin(allowed, 'https://viewer.example.org')).toBe(false);
    expect(isAllowedOrigin(allowed, 'http://127.0.0.1.example.org')).toBe(false);
    expect(isAllowedOrigin(allowed, 'null')).toBe(false);
  });

  test('given a list, then exactly those origins (case and a trailing slash as browsers normalise them)', () => {
    const allowed = parseAllowedOrigins(' https://Viewer.example.org/ , http://127.0.0.1:7072');
    expect(isAllowedOrigin(allowed, 'https://viewer.example.org')).toBe(true);
    expect(isAllowedOrigin(allowed, 'http://127.0.0.1:7072')).toBe(true);
    expect(isAllowedOrigin(allowed, 'http://127.0.0.1:7073')).toBe(false);
    expect(isAllowedOrigin(allowed, 'https://viewer.example.org.evil.example')).toBe(false);
  });

  test('given *, then any origin; given something that is not an origin, then it fails naming the setting', () => {
    expect(isAllowedOrigin(parseAllowedOrigins('*'), 'https://anywhere.example')).toBe(true);
    expect(() => parseAllowedOrigins('https://viewer.example.org/path')).toThrow(/CORS_ALLOWED_ORIGINS/);
    expect(() => parseAllowedOrigins('viewer.example.org')).toThrow(/CORS_ALLOWED_ORIGINS/);
    expect(() => parseAllowedOrigins('ftp://viewer.example.org')).toThrow(/CORS_ALLOWED_ORIGINS/);
  });
});

describe('the host\'s CORS answers', () => {
  test('given a preflight of an allowed origin, then 204 with the origin, the methods and the asked headers, before any function', async () => {
    const server = await serve('https://viewer.example.org');
    try {
      const res = await fetch(`${server.url}/api/dicomweb/studies`, {
        method: 'OPTIONS',
        headers: { origin: 'https://viewer.example.org', 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization,accept' },
      });
      expect(res.status).toBe(204);
      expect(res.headers.get('access-control-allow-origin')).toBe('https://viewer.example.org');
      expect(res.headers.get('access-control-allow-methods')).toContain('GET');
      expect(res.headers.get('access-control-allow-headers')).toBe('authorization,accept');
      expect(await res.text()).toBe('');
    } finally {
      await server.close();
    }
  });

  test('given a request of an allowed origin, then the answer carries the origin and the exposed headers', async () => {
    const server = await serve(undefined);
    try {
      const res = await fetch(`${server.url}/api/dicomweb/studies`, { headers: { origin: 'http://127.0.0.1:7072' } });
      expect(res.status).toBe(200);
      expect(res.headers.get('access-control-allow-origin')).toBe('http://127.0.0.1:7072');
      expect(res.headers.get('access-control-expose-headers')).toContain('Content-Range');
      expect(res.headers.get('vary')).toBe('Origin');
      expect(await res.text()).toBe('ok');
    } finally {
      await server.close();
    }
  });

  test('given another origin, or no origin, then no CORS header, and a preflight goes on to the routes', async () => {
    const server = await serve('https://viewer.example.org');
    try {
      const other = await fetch(`${server.url}/x`, { headers: { origin: 'https://elsewhere.example' } });
      expect(other.headers.get('access-control-allow-origin')).toBeNull();
      const none = await fetch(`${server.url}/x`);
      expect(none.headers.get('access-control-allow-origin')).toBeNull();
      const preflight = await fetch(`${server.url}/x`, { method: 'OPTIONS', headers: { origin: 'https://elsewhere.example', 'access-control-request-method': 'GET' } });
      expect(preflight.status).toBe(200);
      expect(preflight.headers.get('access-control-allow-origin')).toBeNull();
    } finally {
      await server.close();
    }
  });

  test('given asked headers that are not a header list, then the default list instead of an echo', async () => {
    const server = await serve(undefined);
    try {
      const res = await fetch(`${server.url}/x`, { method: 'OPTIONS', headers: { origin: 'http://localhost:7072', 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization; x=1' } });
      expect(res.headers.get('access-control-allow-headers')).toBe('Authorization, Accept, Content-Type, Range');
    } finally {
      await server.close();
    }
  });
});
