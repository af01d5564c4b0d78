/**
 * In HTTP streaming mode the local host gives each request to the worker's listener in its own
 * process (handToWorker): no connection from the host to the listener, the library writes the
 * answer onto the client's response, and the hop's own header stays off it.
 */
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';

import { capturingServers, type FunctionHost, startHost } from '../../../local/host';

const functionsLib = JSON.stringify(require.resolve('@azure/functions'));

const FUNCTIONS = `
const { app } = require(${functionsLib});
app.setup({ enableHttpStream: true });
app.http('hello', { methods: ['GET'], authLevel: 'anonymous', route: 'hello/{n}', handler: async (request) => ({ body: 'hello ' + request.params.n }) });
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
