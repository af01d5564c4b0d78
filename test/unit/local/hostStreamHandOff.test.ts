/**
 * In HTTP streaming mode the local host gives each request to the worker's listener in its own
 * process (handToWorker): no connection from the host to the listener, the library writes the
 * answer onto the client's response, and the hop's own header stays off it. A streamed body
 * paced by its response (functions/httpBackpressure.ts) is read no faster than the client takes
 * it, and no further once the client has gone.
 */
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';

import { capturingServers, type FunctionHost, startHost } from '../../../local/host';
import { writeTranspiled } from '../transpiled';

const functionsLib = JSON.stringify(require.resolve('@azure/functions'));
// The host loads the fixture with Node's own require, outside this test's sandbox: the fixture
// gets the app's flow control module compiled beside it, and tells its state over HTTP.

/** What the streaming fixture function records of its body: chunks pulled from it, and whether its reading ended. */
interface BigBody {
  pulled: number;
  ended: boolean;
}
const BIG_CHUNKS = 256;
const BIG_CHUNK_BYTES = 1024 * 1024;

const FUNCTIONS = `
const { app } = require(${functionsLib});
app.setup({ enableHttpStream: true });
app.http('hello', { methods: ['GET'], authLevel: 'anonymous', route: 'hello/{n}', handler: async (request) => ({ body: 'hello ' + request.params.n }) });
const { paced } = require('../lib/httpBackpressure.js');
const bodies = {};
app.http('bigState', { methods: ['GET'], authLevel: 'anonymous', route: 'big-state/{name}', handler: async (request) => ({ jsonBody: bodies[request.params.name] ?? null }) });
app.http('big', { methods: ['GET'], authLevel: 'anonymous', route: 'big/{name}', handler: async (request, context) => {
  const state = bodies[request.params.name] = { pulled: 0, ended: false };
  async function* source() {
    try {
      for (let i = 0; i < ${BIG_CHUNKS}; i++) {
        state.pulled += 1;
        yield Buffer.alloc(${BIG_CHUNK_BYTES}, i);
      }
    } finally {
      state.ended = true;
    }
  }
  const name = request.params.name;
  const chunks = name.startsWith('unpaced') ? source() : name.startsWith('stall') ? paced(source(), context.invocationId, 300) : paced(source(), context.invocationId);
  return { headers: { 'content-type': 'application/octet-stream' }, body: ReadableStream.from(chunks) };
} });
app.http('echo', { methods: ['POST'], authLevel: 'anonymous', route: 'echo', handler: async (request) => ({ headers: { 'x-seen': request.headers.get('x-seen') ?? '' }, body: 'got ' + (await request.text()) + ' from ' + new URL(request.url).host }) });
`;

let dir: string;
let host: FunctionHost;
/** HTTP servers created while the host started: its own, and the library's listener for streaming mode. */
const created: http.Server[] = [];

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'host-handoff-'));
  fs.mkdirSync(path.join(dir, 'functions'));
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'fixture-app', main: 'functions/*.js' }));
  fs.writeFileSync(path.join(dir, 'functions', 'app.js'), FUNCTIONS);
  fs.mkdirSync(path.join(dir, 'lib'));
  writeTranspiled('functions/httpBackpressure.ts', path.join(dir, 'lib', 'httpBackpressure.js'));
  host = await capturingServers(created, () => startHost({ projectRoot: dir, port: 0, logSink: () => undefined }));
});

afterAll(async () => {
  await host?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function get(url: string, agent: http.Agent): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      })
      .on('error', reject);
  });
}

test('given requests one after the other in streaming mode, then they reach the worker with no connection of their own', async () => {
  const hostPort = Number(new URL(host.url).port);
  const listeners = created.filter((server) => (server.address() as { port?: number } | null)?.port !== hostPort);
  // The library made its listener (HttpUri): the requests could have gone over it.
  expect(listeners.length).toBeGreaterThanOrEqual(1);
  let accepted = 0;
  const count = () => accepted++;
  for (const listener of listeners) listener.on('connection', count);
  const client = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let n = 1; n <= 5; n++) {
      const answer = await get(`${host.url}/api/hello/${n}`, client);
      expect(answer).toMatchObject({ status: 200, body: `hello ${n}` });
      // The hop's own header is the host's business, not the client's.
      expect(answer.headers['x-ms-invocation-id']).toBeUndefined();
    }
  } finally {
    for (const listener of listeners) listener.off('connection', count);
    client.destroy();
  }
  expect(accepted).toBe(0);
});

test('given a POST with a body in streaming mode, then the handler reads the body, the headers and the host it was sent to', async () => {
  const res = await fetch(`${host.url}/api/echo`, { method: 'POST', headers: { 'x-seen': 'yes' }, body: 'a body' });
  expect(res.status).toBe(200);
  expect(res.headers.get('x-seen')).toBe('yes');
  expect(await res.text()).toBe(`got a body from ${new URL(host.url).host}`);
});

async function bigBody(name: string): Promise<BigBody> {
  const state = (await (await fetch(`${host.url}/api/big-state/${name}`)).json()) as BigBody | null;
  if (!state) throw new Error(`the function did not run for ${name}`);
  return state;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Asks for /big/{name}, takes the headers and then nothing for `holdMs`; then goes away. */
async function slowClient(name: string, holdMs: number): Promise<{ status: number; whileHeld: number }> {
  return new Promise((resolve, reject) => {
    const request = http.get(`${host.url}/api/big/${name}`, (res) => {
      res.pause();
      void sleep(holdMs)
        .then(() => bigBody(name))
        .then(({ pulled }) => {
          request.destroy();
          resolve({ status: res.statusCode ?? 0, whileHeld: pulled });
        }, reject);
    });
    request.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? undefined : reject(e)));
  });
}

test('given a client that takes nothing, then a paced body is read no further than what the sockets hold, and not at all once the client has gone', async () => {
  const { status, whileHeld } = await slowClient('paced', 1500);
  expect(status).toBe(200);
  // 256 MiB asked for; the socket buffers of a loopback connection take a few MiB.
  expect(whileHeld).toBeGreaterThan(0);
  expect(whileHeld).toBeLessThanOrEqual(24);
  let after = await bigBody('paced');
  for (let i = 0; i < 50 && !after.ended; i++) after = (await sleep(20), await bigBody('paced'));
  expect(after.ended).toBe(true);
  expect(after.pulled).toBeLessThanOrEqual(whileHeld + 1);
});

test('given a client that takes nothing for longer than the stall limit, then its answer is given up and the body no longer read', async () => {
  let response: http.IncomingMessage | undefined;
  const request = http.get(`${host.url}/api/big/stalled`, (res) => {
    res.pause();
    response = res;
  });
  request.on('error', () => undefined);
  // The limit is 300 ms for this route; a paused client does not see its connection go until it reads again.
  await sleep(1500);
  const state = await bigBody('stalled');
  expect(state.ended).toBe(true);
  expect(state.pulled).toBeLessThanOrEqual(24);
  expect(response?.statusCode).toBe(200);
  // Read again, the client gets what the sockets held and then the cut: the answer is incomplete.
  const complete = await new Promise<boolean>((resolve) => {
    const res = response as http.IncomingMessage;
    res.on('close', () => resolve(res.complete));
    res.on('error', () => undefined);
    res.resume();
  });
  expect(complete).toBe(false);
});

test('given the same body unpaced, then the library reads it all while the client takes nothing (the flaw pacing works around)', async () => {
  const { whileHeld } = await slowClient('unpaced', 1500);
  expect(whileHeld).toBe(BIG_CHUNKS);
});

test('given a client that reads, then a paced body arrives whole and in order', async () => {
  // Chunk i of the body is BIG_CHUNK_BYTES bytes of the value i % 256: the first byte of each
  // chunk's place in the answer tells whether it came, and in its turn.
  const received = await new Promise<{ bytes: number; chunkStarts: number[] }>((resolve, reject) => {
    http
      .get(`${host.url}/api/big/whole`, (res) => {
        let bytes = 0;
        const chunkStarts: number[] = [];
        res.on('data', (d: Buffer) => {
          for (let at = Math.ceil(bytes / BIG_CHUNK_BYTES) * BIG_CHUNK_BYTES; at < bytes + d.length; at += BIG_CHUNK_BYTES) chunkStarts.push(d[at - bytes] ?? -1);
          bytes += d.length;
        });
        res.on('end', () => resolve({ bytes, chunkStarts }));
      })
      .on('error', reject);
  });
  expect(received.bytes).toBe(BIG_CHUNKS * BIG_CHUNK_BYTES);
  expect(received.chunkStarts).toEqual(Array.from({ length: BIG_CHUNKS }, (_, i) => i % 256));
  expect(await bigBody('whole')).toEqual({ pulled: BIG_CHUNKS, ended: true });
});
