/**
 * The viewer's static server and configuration (local/viewer.ts) on a stand-in build folder,
 * and the study that `npm start`'s viewer link opens (local/startSummary.ts). The real OHIF
 * build in a real browser: test/integration/viewer.test.ts.
 */
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';
import * as vm from 'vm';

import { viewerStudy } from '../../../local/startSummary';
import { contentTypeOf, startViewer, viewerConfigScript, type ViewerServer } from '../../../local/viewer';

const ROOT = 'http://127.0.0.1:7071/api/dicomweb';
let dir: string;
let viewer: ViewerServer;
let tokens = 0;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'viewer-unit-'));
  fs.writeFileSync(path.join(dir, 'index.html'), '<!doctype html><script src="/app-config.js"></script>');
  fs.writeFileSync(path.join(dir, '34b1e6b1deb5828e.wasm'), Buffer.from([0, 0x61, 0x73, 0x6d]));
  fs.writeFileSync(path.join(dir, 'app.bundle.0f6159c501addfe9.js'), 'console.log(1)');
  fs.mkdirSync(path.join(dir, 'assets'));
  fs.writeFileSync(path.join(dir, 'assets', 'logo.svg'), '<svg/>');
  fs.writeFileSync(path.join(os.tmpdir(), 'viewer-unit-outside.txt'), 'outside');
  viewer = await startViewer({ distDir: dir, dicomWebRoot: ROOT, port: 0, token: async () => `token-${++tokens}` });
});

afterAll(async () => {
  await viewer?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
  fs.rmSync(path.join(os.tmpdir(), 'viewer-unit-outside.txt'), { force: true });
});

/** Runs an app-config.js as the browser would, and returns window.config. */
function evaluateConfig(script: string): unknown {
  const window: { config?: unknown } = {};
  vm.runInNewContext(script, { window });
  return window.config;
}

describe('the viewer server', () => {
  test('given the build\'s files, then each is served with its content type, fingerprinted ones cached for good', async () => {
    const wasm = await fetch(`${viewer.url}/34b1e6b1deb5828e.wasm`);
    expect(wasm.status).toBe(200);
    expect(wasm.headers.get('content-type')).toBe('application/wasm');
    expect(wasm.headers.get('cache-control')).toContain('immutable');
    expect(Buffer.from(await wasm.arrayBuffer())).toEqual(Buffer.from([0, 0x61, 0x73, 0x6d]));
    const js = await fetch(`${viewer.url}/app.bundle.0f6159c501addfe9.js`);
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    const svg = await fetch(`${viewer.url}/assets/logo.svg`);
    expect(svg.headers.get('content-type')).toBe('image/svg+xml');
    expect(svg.headers.get('cache-control')).toBe('no-cache');
    expect(contentTypeOf('x.css')).toBe('text/css; charset=utf-8');
    expect(contentTypeOf('x.json')).toBe('application/json; charset=utf-8');
  });

  test('given a route of the app (/viewer, /), then index.html; given a missing asset, then 404', async () => {
    for (const p of ['/', '/viewer?StudyInstanceUIDs=1.2.3', '/viewer/dicomweb', '/localbasic']) {
      const res = await fetch(`${viewer.url}${p}`);
      expect([p, res.status, res.headers.get('content-type')]).toEqual([p, 200, 'text/html; charset=utf-8']);
      expect(await res.text()).toContain('/app-config.js');
    }
    expect((await fetch(`${viewer.url}/missing.bundle.js`)).status).toBe(404);
  });

  test('given a path that climbs out of the build (encoded slashes and dots, sent as they are), then it is never served', async () => {
    for (const raw of ['/..%2fviewer-unit-outside.txt', '/%2e%2e%2f%2e%2e%2fviewer-unit-outside.txt', '/assets/..%2f..%2fviewer-unit-outside.txt']) {
      const answer = await new Promise<{ status?: number; body: string }>((resolve, reject) => {
        http.get(`${viewer.url}${raw}`, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode, body }));
        }).on('error', reject);
      });
      expect([raw, answer.status]).toEqual([raw, 404]);
      expect(answer.body).not.toContain('outside');
    }
  });

  test('given a method other than GET or HEAD, then 405', async () => {
    expect((await fetch(`${viewer.url}/`, { method: 'POST', body: 'x' })).status).toBe(405);
    const head = await fetch(`${viewer.url}/34b1e6b1deb5828e.wasm`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe('4');
  });

  test('given /app-config.js, then it is made at each request with a fresh token and never cached', async () => {
    const a = await fetch(`${viewer.url}/app-config.js`);
    expect(a.headers.get('cache-control')).toBe('no-store');
    expect(a.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    const first = await a.text();
    const second = await (await fetch(`${viewer.url}/app-config.js`)).text();
    expect(first).not.toBe(second);
    expect(second).toContain(`"token-${tokens}"`);
  });
});

describe('the viewer configuration', () => {
  test('given a token, then OHIF gets a config function whose data source hands the token to its authentication service', async () => {
    const config = evaluateConfig(viewerConfigScript({ dicomWebRoot: ROOT, token: 'abc' })) as ((o: unknown) => Record<string, unknown>) & Record<string, unknown>;
    expect(typeof config).toBe('function');
    // The fields stay readable on window.config itself.
    expect(config.defaultDataSourceName).toBe('research');
    let header: (() => unknown) | undefined;
    const servicesManager = { services: { userAuthenticationService: { setServiceImplementation: (impl: { getAuthorizationHeader: () => unknown }) => (header = impl.getAuthorizationHeader) } } };
    const resolved = config({ servicesManager });
    const source = (resolved.dataSources as { configuration: Record<string, unknown> }[])[0]!.configuration;
    expect(source).toMatchObject({ qidoRoot: ROOT, wadoRoot: ROOT, imageRendering: 'wadors', supportsFuzzyMatching: false });
    expect(header).toBeUndefined();
    const onConfiguration = source.onConfiguration as (c: unknown, o: unknown) => unknown;
    expect(onConfiguration(source, {})).toBe(source);
    expect(header?.()).toEqual({ Authorization: 'Bearer abc' });
  });

  test('given no token (Azure, OIDC sign-in), then window.config is plain data', () => {
    const config = evaluateConfig(viewerConfigScript({ dicomWebRoot: 'https://api.example.org/api/dicomweb' })) as Record<string, unknown>;
    expect(typeof config).toBe('object');
    expect(JSON.stringify(config)).toContain('https://api.example.org/api/dicomweb');
  });
});

describe('the study of the viewer link', () => {
  const study = (uid: string, modalities: string[]) => ({ '0020000D': { Value: [uid] }, '00080061': { Value: modalities } });

  test('given studies with and without images, then the first with an image modality', () => {
    expect(viewerStudy([study('1', ['SR']), study('2', ['SEG', 'RTSTRUCT']), study('3', ['CT', 'SEG']), study('4', ['MR'])])).toBe('3');
  });

  test('given no study with images, then the first study; given none, then undefined', () => {
    expect(viewerStudy([study('1', ['SR']), study('2', ['SEG'])])).toBe('1');
    expect(viewerStudy([])).toBeUndefined();
    expect(viewerStudy([{ '00080061': { Value: ['CT'] } }])).toBeUndefined();
  });
});
