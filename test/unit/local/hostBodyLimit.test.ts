/**
 * The local host caps the request bodies it reads, as the Functions host does
 * (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT) and as Event Grid bounds its deliveries: past the cap it
 * answers 413 and stops reading, without waiting for the rest of the body.
 */
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';

import { type FunctionHost, startHost } from '../../../local/host';

const functionsLib = JSON.stringify(require.resolve('@azure/functions'));

const FUNCTIONS = `
const { app } = require(${functionsLib});
app.http('upload', {
  methods: ['POST'],
  authLevel: 'anonymous',
  route: 'upload',
  handler: async (request, context) => { context.log('INVOKED upload'); return { body: String((await request.arrayBuffer()).byteLength) }; },
});
app.eventGrid('onEvent', { handler: async (event, context) => { context.log('INVOKED onEvent'); } });
`;

const HTTP_CAP = 64 * 1024;
const EVENT_GRID_CAP = 16 * 1024;
const caps = { maxRequestBodyBytes: HTTP_CAP, maxEventGridBodyBytes: EVENT_GRID_CAP };

let dir: string;
let host: FunctionHost;
const logs: string[] = [];

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'host-body-limit-'));
  fs.mkdirSync(path.join(dir, 'functions'));
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'fixture-app', main: 'functions/*.js' }));
  fs.writeFileSync(path.join(dir, 'functions', 'app.js'), FUNCTIONS);
  host = await startHost({
    projectRoot: dir,
    port: 0,
    ...caps,
    logSink: (_level, _fn, message) => logs.push(message),
  });
});

afterAll(async () => {
  await host?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

interface Outcome {
  status: number;
  body: string;
  /** Bytes the client had written when the response arrived. */
  written: number;
}

/**
 * Streams `chunk` repeatedly (chunked encoding unless a content-length is given) until the response arrives
 * or `maxBytes` were written, and never ends the request itself: a host that waits for the end
 * of the body never answers, and the call rejects after `timeoutMs`.
 */
function streamUntilAnswered(pathAndQuery: string, headers: Record<string, string>, maxBytes: number, timeoutMs = 5000): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const url = new URL(pathAndQuery, host.url);
    let written = 0;
    let answered = false;
    const framing = 'content-length' in headers ? {} : { 'transfer-encoding': 'chunked' };
    const req = http.request(url, { method: 'POST', headers: { ...headers, ...framing } });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms after ${written} bytes`));
    }, timeoutMs);
    req.on('response', (res) => {
      answered = true;
      const at = written;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        clearTimeout(timer);
        req.destroy();
        resolve({ status: res.statusCode ?? 0, body, written: at });
      });
    });
    // The host may close the connection after its answer; that is not a failure here.
    req.on('error', () => undefined);
    const chunk = Buffer.alloc(4096, 0x20);
    const pump = () => {
      while (!answered && written < maxBytes) {
        written += chunk.length;
        if (!req.write(chunk)) return void req.once('drain', pump);
      }
    };
    // Send the headers even when no body byte follows.
    req.flushHeaders();
    pump();
  });
}

function post(pathAndQuery: string, headers: Record<string, string>, body: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(pathAndQuery, host.url), { method: 'POST', headers: { ...headers, 'content-length': String(body.length) } });
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const eventGridHeaders = { 'content-type': 'application/json', 'aeg-event-type': 'Notification' };

/** Bytes sent to the client's body when it writes without end: far more than any buffer between the two. */
const ENDLESS = 64 * 1024 * 1024;

/**
 * What the client can have written when the host stops reading and answers: the cap, plus what
 * the kernel buffers on the loopback connection (the client's send buffer and the host's receive
 * buffer, which Linux grows up to tcp_wmem's and tcp_rmem's maximum; 6.x kernels allow 32 MiB
 * for the latter). Past this bound, the host went on reading after the cap.
 */
function kernelBuffered(): number {
  const max = (file: string, fallback: number) => {
    try {
      return Number(fs.readFileSync(file, 'utf8').trim().split(/\s+/).at(-1)) || fallback;
    } catch {
      return fallback;
    }
  };
  return max('/proc/sys/net/ipv4/tcp_wmem', 4 << 20) + max('/proc/sys/net/ipv4/tcp_rmem', 6 << 20) + (1 << 20);
}

describe('request body cap of the local host', () => {
  test('given an Event Grid delivery that keeps streaming past the cap, then 413 before the body ends and no invocation', async () => {
    const before = logs.filter((l) => l.includes('INVOKED onEvent')).length;
    const outcome = await streamUntilAnswered('/runtime/webhooks/eventgrid?functionName=onEvent', eventGridHeaders, ENDLESS);
    expect(outcome.status).toBe(413);
    expect(JSON.parse(outcome.body)).toEqual({ error: expect.stringContaining(`${EVENT_GRID_CAP} bytes`) });
    // Reading stopped at the cap: the client wrote no more than the connection's buffers hold, not its 64 MiB.
    expect(kernelBuffered()).toBeLessThan(ENDLESS);
    expect(outcome.written).toBeLessThan(EVENT_GRID_CAP + kernelBuffered());
    expect(logs.filter((l) => l.includes('INVOKED onEvent')).length).toBe(before);
  });

  test('given an Event Grid delivery whose content-length exceeds the cap, then 413 without reading it', async () => {
    const outcome = await streamUntilAnswered('/runtime/webhooks/eventgrid?functionName=onEvent', { ...eventGridHeaders, 'content-length': String(EVENT_GRID_CAP + 1) }, 0);
    expect(outcome.status).toBe(413);
    expect(outcome.written).toBe(0);
  });

  test('given an HTTP function request past its cap, then 413 and the function is not invoked', async () => {
    const outcome = await streamUntilAnswered('/api/upload', { 'content-type': 'application/octet-stream' }, ENDLESS);
    expect(outcome.status).toBe(413);
    expect(outcome.written).toBeLessThan(HTTP_CAP + kernelBuffered());
    expect(logs.some((l) => l.includes('INVOKED upload'))).toBe(false);
  });

  test('given bodies within the caps, then they are delivered whole', async () => {
    const event = { id: '1', subject: '/s', eventType: 'Test.Happened', eventTime: '2024-01-01T00:00:00Z', dataVersion: '1', data: { pad: 'x'.repeat(EVENT_GRID_CAP - 200) } };
    const delivered = await post('/runtime/webhooks/eventgrid?functionName=onEvent', eventGridHeaders, Buffer.from(JSON.stringify([event])));
    expect(delivered.status).toBe(200);
    const upload = await post('/api/upload', { 'content-type': 'application/octet-stream' }, Buffer.alloc(HTTP_CAP, 1));
    expect(upload).toEqual({ status: 200, body: String(HTTP_CAP) });
  });

  test('given a malformed cap setting, then the host does not start and names the setting', async () => {
    const saved = process.env.FUNCTIONS_REQUEST_BODY_SIZE_LIMIT;
    process.env.FUNCTIONS_REQUEST_BODY_SIZE_LIMIT = '10MB';
    try {
      await expect(startHost({ projectRoot: dir, port: 0, logSink: () => undefined })).rejects.toThrow(/FUNCTIONS_REQUEST_BODY_SIZE_LIMIT/);
    } finally {
      if (saved === undefined) delete process.env.FUNCTIONS_REQUEST_BODY_SIZE_LIMIT;
      else process.env.FUNCTIONS_REQUEST_BODY_SIZE_LIMIT = saved;
    }
  });
});
