/**
 * The fault proxy of the reliability tests, against a small HTTP server on loopback: what it
 * answers when a rule fires, that the same seed makes the same decisions, that bodies stream
 * through, and that "down" refuses connections on the same port until it is up again.
 */
import * as http from 'http';

import { FaultPlan, FaultProxy, startFaultProxy } from '../../../local/faultProxy';
import { closeServer, listen } from '../../../local/net';

let upstream: http.Server;
let upstreamUrl: string;
/** Called for each request the upstream server gets; answers 200 with the body it read. */
let onUpstream: (req: http.IncomingMessage, res: http.ServerResponse) => void;
const proxies: FaultProxy[] = [];

beforeAll(async () => {
  upstream = http.createServer((req, res) => onUpstream(req, res));
  const port = await listen(upstream, 0, '127.0.0.1', 'test upstream');
  upstreamUrl = `http://127.0.0.1:${port}`;
});

beforeEach(() => {
  onUpstream = (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => res.end(`echo:${Buffer.concat(chunks).toString()}`));
  };
});

afterEach(async () => {
  await Promise.all(proxies.splice(0).map((p) => p.stop()));
});

afterAll(() => closeServer(upstream));

async function proxy(flavor: 'blob' | 'cosmos', plan?: FaultPlan): Promise<FaultProxy> {
  const p = await startFaultProxy({ target: upstreamUrl, flavor, plan });
  proxies.push(p);
  return p;
}

async function statuses(p: FaultProxy, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const res = await fetch(`${p.url}/x`, { method: 'POST', body: 'b' });
    await res.arrayBuffer();
    out.push(res.status);
  }
  return out;
}

describe('fault proxy', () => {
  it('given no plan, then requests and answers pass through unchanged', async () => {
    const p = await proxy('blob');
    const res = await fetch(`${p.url}/container/blob?comp=x`, { method: 'PUT', body: 'hello' });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('echo:hello');
    expect(p.stats()).toMatchObject({ forwarded: 1, throttled: 0, unavailable: 0 });
  });

  it('given a Cosmos 429 rule, then the answer carries x-ms-retry-after-ms and a TooManyRequests body, and the request never reaches the server', async () => {
    let reached = 0;
    onUpstream = (_req, res) => {
      reached += 1;
      res.end();
    };
    const p = await proxy('cosmos', { seed: 1, rules: [{ action: { kind: 'status', status: 429, retryAfterMs: 75 } }] });
    const res = await fetch(`${p.url}/dbs/db/colls/c/docs`, { method: 'POST', body: '{}' });
    expect(res.status).toBe(429);
    expect(res.headers.get('x-ms-retry-after-ms')).toBe('75');
    expect(res.headers.get('x-ms-substatus')).toBe('3200');
    expect(((await res.json()) as { code: string }).code).toBe('TooManyRequests');
    expect(reached).toBe(0);
    expect(p.stats().throttled).toBe(1);
  });

  it('given a blob 503 rule, then the answer is a storage XML error with x-ms-error-code ServerBusy and Retry-After', async () => {
    const p = await proxy('blob', { seed: 1, rules: [{ action: { kind: 'status', status: 503 } }] });
    const res = await fetch(`${p.url}/devstoreaccount1/c/b`);
    expect(res.status).toBe(503);
    expect(res.headers.get('x-ms-error-code')).toBe('ServerBusy');
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(await res.text()).toContain('<Code>ServerBusy</Code>');
  });

  it('given the same seeded plan twice, then the same requests get the same answers, and about the planned share of them', async () => {
    const plan: FaultPlan = { seed: 42, rules: [{ action: { kind: 'status', status: 503 }, probability: 0.3 }] };
    const first = await statuses(await proxy('blob', plan), 60);
    const second = await statuses(await proxy('blob', plan), 60);
    expect(second).toEqual(first);
    const faulted = first.filter((s) => s === 503).length;
    expect(faulted).toBeGreaterThan(6);
    expect(faulted).toBeLessThan(36);
  });

  it('given an every-Nth rule limited to writes, then exactly every Nth write is answered 429 and reads pass', async () => {
    const p = await proxy('blob', { seed: 1, rules: [{ action: { kind: 'status', status: 429 }, everyNth: 3, methods: ['POST'] }] });
    expect(await statuses(p, 9)).toEqual([200, 200, 429, 200, 200, 429, 200, 200, 429]);
    const read = await fetch(`${p.url}/x`);
    await read.arrayBuffer();
    expect(read.status).toBe(200);
  });

  it('given a rule that spares requests with a header, then those pass and the others get the fault', async () => {
    const p = await proxy('cosmos', { seed: 1, rules: [{ action: { kind: 'status', status: 503 }, methods: ['POST'], unlessHeader: 'x-ms-documentdb-isquery' }] });
    const query = await fetch(`${p.url}/dbs/d/colls/c/docs`, { method: 'POST', headers: { 'x-ms-documentdb-isquery': 'True' }, body: '{}' });
    await query.arrayBuffer();
    const create = await fetch(`${p.url}/dbs/d/colls/c/docs`, { method: 'POST', body: '{}' });
    await create.arrayBuffer();
    expect([query.status, create.status]).toEqual([200, 503]);
  });

  it('given a rule with a time window that has passed, then nothing is injected', async () => {
    const p = await proxy('blob', { seed: 1, rules: [{ action: { kind: 'status', status: 503 }, window: { fromMs: 0, toMs: 1 } }] });
    await new Promise((r) => setTimeout(r, 20));
    expect(await statuses(p, 3)).toEqual([200, 200, 200]);
  });

  it('given a lost-response rule, then the server gets the request and the client loses its connection', async () => {
    let reached = 0;
    onUpstream = (req, res) => {
      reached += 1;
      req.resume();
      req.on('end', () => res.end('applied'));
    };
    const p = await proxy('cosmos', { seed: 1, rules: [{ action: { kind: 'dropResponse' }, methods: ['POST'] }] });
    await expect(fetch(`${p.url}/dbs/db/colls/c/docs`, { method: 'POST', body: '{}' })).rejects.toThrow();
    expect(reached).toBe(1);
    expect(p.stats().responsesDropped).toBe(1);
  });

  it('given a latency rule, then each request takes at least the minimum delay', async () => {
    const p = await proxy('cosmos', { seed: 1, rules: [{ action: { kind: 'latency', minMs: 120, maxMs: 150 } }] });
    const started = Date.now();
    expect(await statuses(p, 2)).toEqual([200, 200]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(240);
    expect(p.stats().delayed).toBe(2);
  });

  it('given a streamed upload, then the server sees its first part before the client has sent the rest', async () => {
    let firstPartSeen: () => void = () => undefined;
    const seen = new Promise<void>((resolve) => (firstPartSeen = resolve));
    onUpstream = (req, res) => {
      let received = '';
      req.on('data', (c: Buffer) => {
        received += c.toString();
        if (received.includes('part1')) firstPartSeen();
      });
      req.on('end', () => res.end(`echo:${received}`));
    };
    const p = await proxy('blob');
    const answer = new Promise<string>((resolve, reject) => {
      const req = http.request(`${p.url}/stream`, { method: 'PUT', headers: { 'transfer-encoding': 'chunked' } }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve(body));
      });
      req.on('error', reject);
      req.write('part1');
      // The rest is sent only once the server has the first part: a buffering proxy would hang here.
      void seen.then(() => req.end('part2'));
    });
    await expect(Promise.race([answer, new Promise((_, reject) => setTimeout(() => reject(new Error('the proxy buffered the body')), 5000))])).resolves.toBe(
      'echo:part1part2',
    );
  });

  it('given the proxy down, then connections are refused, and once up again it answers on the same port', async () => {
    const p = await proxy('cosmos');
    await p.setDown(true);
    await expect(fetch(`${p.url}/x`)).rejects.toMatchObject({ cause: { code: 'ECONNREFUSED' } });
    await p.setDown(false);
    const res = await fetch(`${p.url}/x`);
    await res.arrayBuffer();
    expect(res.status).toBe(200);
    expect(p.stats().downPeriods).toBe(1);
  });

  it('given the server behind it gone, then the client connection is dropped and counted', async () => {
    const dead = http.createServer();
    const port = await listen(dead, 0, '127.0.0.1', 'dead upstream');
    await closeServer(dead);
    const p = await startFaultProxy({ target: `http://127.0.0.1:${port}`, flavor: 'cosmos' });
    proxies.push(p);
    await expect(fetch(`${p.url}/x`)).rejects.toThrow();
    expect(p.stats().upstreamFailed).toBe(1);
  });
});
