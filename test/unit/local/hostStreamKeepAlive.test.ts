/**
 * In HTTP streaming mode the local host forwards each request to the worker's listener; it keeps
 * those connections open between requests rather than opening one (with a DNS lookup of the
 * listener's `localhost`) per request.
 */
import * as diagnostics from 'diagnostics_channel';
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';

import { type FunctionHost, startHost } from '../../../local/host';

const functionsLib = JSON.stringify(require.resolve('@azure/functions'));

const FUNCTIONS = `
const { app } = require(${functionsLib});
app.setup({ enableHttpStream: true });
app.http('hello', { methods: ['GET'], authLevel: 'anonymous', route: 'hello/{n}', handler: async (request) => ({ body: 'hello ' + request.params.n }) });
`;

let dir: string;
let host: FunctionHost;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'host-keepalive-'));
  fs.mkdirSync(path.join(dir, 'functions'));
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'fixture-app', main: 'functions/*.js' }));
  fs.writeFileSync(path.join(dir, 'functions', 'app.js'), FUNCTIONS);
  host = await startHost({ projectRoot: dir, port: 0, logSink: () => undefined });
});

afterAll(async () => {
  await host?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function get(url: string, agent: http.Agent): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

test('given requests one after the other in streaming mode, then they reach the worker over one kept connection', async () => {
  const client = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const opened: unknown[] = [];
  const onSocket = (message: unknown) => opened.push(message);
  diagnostics.subscribe('net.client.socket', onSocket);
  try {
    for (let n = 1; n <= 5; n++) expect(await get(`${host.url}/api/hello/${n}`, client)).toEqual({ status: 200, body: `hello ${n}` });
  } finally {
    diagnostics.unsubscribe('net.client.socket', onSocket);
    client.destroy();
  }
  // One connection from this client to the host, one from the host to the worker's listener.
  expect(opened).toHaveLength(2);
});
