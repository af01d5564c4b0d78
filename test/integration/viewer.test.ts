/**
 * The OHIF viewer in a real browser: Debian's chromium, driven by playwright-core, opens the
 * published OHIF build that local/viewer.ts serves (the same as `npm start`), configured for the
 * stack's research API, on research studies of different modalities and transfer syntaxes. Each
 * must show an image: the viewport's canvas is read until it holds non-black pixels (rendering
 * takes a few seconds after the page loads). OHIF's own requests go through QIDO-RS, WADO-RS
 * metadata and frames, with the development Research.Read token and the host's CORS.
 *
 * Needs /usr/bin/chromium (apt-get install chromium; CHROMIUM_PATH names another) and the OHIF
 * build, which local/viewer.ts fetches with npm pack on first use. UPDATE_VIEWER_SCREENSHOT=1
 * writes the first study's screenshot to docs/images/viewer.png (the README's).
 */
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { type Browser, chromium, type Page } from 'playwright-core';

import { ensureViewerBuild, startViewer, type ViewerServer } from '../../local/viewer';
import { loadSettings } from '../../shared/config/settings';
import { encodeBlobName } from '../../shared/events/ingestEvents';
import { apiGet, testStack, waitForEvents } from './stackEnv';

const projectRoot = path.resolve(__dirname, '..', '..');
const FIXTURES = path.join(projectRoot, 'test', 'fixtures', 'dicom');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** Rendering waits for the frames and the codecs' WASM: seconds, more on a loaded 2-CPU machine. */
const RENDER_TIMEOUT_MS = 60_000;

/** One research study each (distinct source studies), of different modalities and transfer syntaxes. */
const STUDIES = [
  { file: 'dcmjs/test__sample-dicom.dcm', kind: 'MR, implicit VR little endian' },
  { file: 'highdicom/dx_image.dcm', kind: 'DX, explicit VR little endian' },
  { file: 'ms-anonymizer/samples__I341.dcm', kind: 'CT, JPEG extended (12-bit)' },
  { file: 'fo-dicom/GH610.dcm', kind: 'PT, JPEG lossless (process 14)' },
  { file: 'pydicom-data/emri_small_RLE.dcm', kind: 'MR multi-frame, RLE lossless' },
  { file: 'fo-dicom/GH064.dcm', kind: 'MR, JPEG 2000 lossless' },
  { file: 'pydicom-deb/test_files__693_J2KI.dcm', kind: 'CT, JPEG 2000' },
];

interface CanvasReading {
  canvases: number;
  /** Pixels of the viewport's canvas, and how many of them are not black. */
  pixels: number;
  nonBlack: number;
}

let landing: ContainerClient;
let distDir: string;
let viewer: ViewerServer;
let browser: Browser;
let shotDir: string;
const studyOf = new Map<string, string>();

/** The research study of an uploaded file, from the operations view of its ingestion. */
async function researchStudy(url: string): Promise<string> {
  const res = await apiGet(`/api/ingestions?source=${encodeURIComponent(url)}`, 'operations');
  const view = (await res.json()) as { status?: string; errorCode?: string; research?: { studyInstanceUid?: string } };
  if (view.status !== 'cataloged' || !view.research?.studyInstanceUid) throw new Error(`${url} was not cataloged: ${view.status} ${view.errorCode ?? ''}`);
  return view.research.studyInstanceUid;
}

beforeAll(async () => {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`no chromium at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM_PATH)`);
  const stack = testStack();
  const settings = loadSettings(stack.env);
  landing = BlobServiceClient.fromConnectionString(stack.env.SourceStorage!).getContainerClient(settings.sourceContainers[0]!);
  distDir = await ensureViewerBuild(projectRoot);
  viewer = await startViewer({ distDir, dicomWebRoot: `${stack.hostUrl}/api/dicomweb`, port: 0, token: async () => stack.tokens.research });
  shotDir = fs.mkdtempSync(path.join(os.tmpdir(), 'viewer-test-'));

  await Promise.all(STUDIES.map((s) => landing.getBlockBlobClient(`viewer/${s.file}`).uploadData(fs.readFileSync(path.join(FIXTURES, ...s.file.split('/'))))));
  await waitForEvents(180_000);
  for (const s of STUDIES) studyOf.set(s.file, await researchStudy(`${stack.blobEndpoint}/${landing.containerName}/${encodeBlobName(`viewer/${s.file}`)}`));
  expect(new Set(studyOf.values()).size).toBe(STUDIES.length);

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--use-gl=swiftshader', '--enable-unsafe-swiftshader', '--ignore-gpu-blocklist'],
  });
}, 300_000);

afterAll(async () => {
  await browser?.close();
  await viewer?.stop();
  if (shotDir) fs.rmSync(shotDir, { recursive: true, force: true });
});

/**
 * Reads the viewport's canvas: cornerstone draws each viewport's image into a 2D canvas
 * (`.cornerstone-canvas`), copied from its WebGL (or CPU) renderer. Overlays (text, tools) are
 * SVG above it, so only the image itself makes its pixels non-black. The series thumbnails are
 * drawn in 256 x 256 canvases of the same class: the viewport (one in the default layout) is
 * the largest canvas, and only it is read.
 */
function readViewportCanvas(page: Page): Promise<CanvasReading> {
  return page.evaluate(() => {
    // Runs in the page (the tests' TypeScript has no DOM types): the little of the DOM it uses.
    interface Canvas {
      width: number;
      height: number;
      getContext(kind: '2d', options: { willReadFrequently: boolean }): { getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } } | null;
    }
    const page = globalThis as unknown as { document: { querySelectorAll(selector: string): Iterable<Canvas> } };
    const canvases = [...page.document.querySelectorAll('canvas.cornerstone-canvas')];
    const viewport = canvases.reduce<Canvas | undefined>((a, c) => (!a || c.width * c.height > a.width * a.height ? c : a), undefined);
    const ctx = viewport && viewport.width > 0 && viewport.height > 0 ? viewport.getContext('2d', { willReadFrequently: true }) : null;
    if (!viewport || !ctx) return { canvases: canvases.length, pixels: 0, nonBlack: 0 };
    const data = ctx.getImageData(0, 0, viewport.width, viewport.height).data;
    let nonBlack = 0;
    for (let i = 0; i < data.length; i += 4) if (data[i]! > 16 || data[i + 1]! > 16 || data[i + 2]! > 16) nonBlack += 1;
    return { canvases: canvases.length, pixels: viewport.width * viewport.height, nonBlack };
  });
}

/** An image: at least 0.5% of the viewport is not black (a small image on a black background still counts). */
const showsImage = (r: CanvasReading) => r.pixels > 0 && r.nonBlack >= r.pixels * 0.005;

/** Reads the canvas every half second until it shows an image or timeoutMs passes; the last reading. */
async function pollViewport(page: Page, timeoutMs: number): Promise<CanvasReading> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const reading = await readViewportCanvas(page);
    if (showsImage(reading) || Date.now() > deadline) return reading;
    await page.waitForTimeout(500);
  }
}

describe('the OHIF viewer that npm start serves', () => {
  it('given the viewer origin, then the API answers its preflight and its requests with CORS headers, and other origins get none', async () => {
    const { hostUrl } = testStack();
    const url = `${hostUrl}/api/dicomweb/studies`;
    const preflight = await fetch(url, {
      method: 'OPTIONS',
      headers: { origin: viewer.url, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe(viewer.url);
    expect(preflight.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('authorization');
    expect(preflight.headers.get('access-control-allow-methods')).toContain('GET');

    const get = await fetch(url, { headers: { origin: viewer.url, authorization: `Bearer ${testStack().tokens.research}` } });
    expect(get.status).toBe(200);
    expect(get.headers.get('access-control-allow-origin')).toBe(viewer.url);
    expect(get.headers.get('access-control-expose-headers')).toContain('Content-Range');

    const other = await fetch(url, { headers: { origin: 'https://elsewhere.example', authorization: `Bearer ${testStack().tokens.research}` } });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('given the viewer, then it serves the OHIF shell, its WASM codecs and an app-config.js for the research API', async () => {
    const html = await fetch(`${viewer.url}/viewer?StudyInstanceUIDs=1.2.3`);
    expect(html.status).toBe(200);
    expect(html.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await html.text()).toContain('/app-config.js');
    const config = await fetch(`${viewer.url}/app-config.js`);
    expect(config.headers.get('content-type')).toMatch(/^text\/javascript/);
    const script = await config.text();
    expect(script).toContain(`${testStack().hostUrl}/api/dicomweb`);
    expect(script).toContain(JSON.stringify(testStack().tokens.research));
    const codec = fs.readdirSync(distDir).find((f) => f.endsWith('.wasm'));
    const wasm = await fetch(`${viewer.url}/${codec}`);
    expect(wasm.status).toBe(200);
    expect(wasm.headers.get('content-type')).toBe('application/wasm');
    expect((await fetch(`${viewer.url}/no-such-asset.js`)).status).toBe(404);
  });

  it('given a study the catalog does not hold, then the viewport shows no image (the check above cannot pass on the page alone)', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    try {
      await page.goto(viewer.studyUrl('2.25.1'), { waitUntil: 'load' });
      await page.waitForTimeout(5000);
      const reading = await pollViewport(page, 5000);
      expect(showsImage(reading)).toBe(false);
    } finally {
      await page.close();
    }
  });

  it.each(STUDIES)('given a research study ($kind), then OHIF in chromium shows its image', async ({ file, kind }) => {
    const uid = studyOf.get(file)!;
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const apiRequests: { url: string; auth: boolean }[] = [];
    const failures: string[] = [];
    page.on('request', (r) => {
      if (r.url().startsWith(testStack().hostUrl)) apiRequests.push({ url: r.url(), auth: /^Bearer /.test(r.headers().authorization ?? '') });
    });
    page.on('requestfailed', (r) => failures.push(`${r.url()} ${r.failure()?.errorText ?? ''}`));
    page.on('response', (r) => {
      if (r.url().startsWith(testStack().hostUrl) && r.status() >= 400) failures.push(`${r.status()} ${r.url()}`);
    });
    try {
      await page.goto(viewer.studyUrl(uid), { waitUntil: 'load' });
      const t0 = Date.now();
      const reading = await pollViewport(page, RENDER_TIMEOUT_MS);
      console.log(`viewer: ${kind}: ${showsImage(reading) ? `shown after ${((Date.now() - t0) / 1000).toFixed(1)} s` : 'not shown'}, ${reading.nonBlack} of ${reading.pixels} viewport pixels not black`);
      // OHIF's first-visit tour covers part of the viewport: skipped for the screenshot.
      await page.getByText('Skip all').click({ timeout: 2000 }).catch(() => undefined);
      const shot = path.join(shotDir, `${path.basename(file)}.png`);
      await page.screenshot({ path: shot });
      if (file === STUDIES[0]!.file && process.env.UPDATE_VIEWER_SCREENSHOT === '1') {
        fs.mkdirSync(path.join(projectRoot, 'docs', 'images'), { recursive: true });
        fs.copyFileSync(shot, path.join(projectRoot, 'docs', 'images', 'viewer.png'));
      }
      const context = `${kind}: ${JSON.stringify(reading)}; API requests ${apiRequests.length}; failures ${JSON.stringify(failures.slice(0, 5))}`;
      expect({ context, rendered: showsImage(reading) }).toEqual({ context, rendered: true });
      // OHIF went through QIDO-RS, WADO-RS metadata and frames, each with the bearer token.
      expect(apiRequests.some((r) => /\/studies\?|\/studies\/[^/]+\/series(\?|$)/.test(r.url))).toBe(true);
      expect(apiRequests.some((r) => /\/metadata(\?|$)/.test(r.url))).toBe(true);
      expect(apiRequests.some((r) => /\/frames\/\d+/.test(r.url))).toBe(true);
      expect(apiRequests.filter((r) => !r.auth).map((r) => r.url)).toEqual([]);
    } finally {
      await page.close();
    }
  }, RENDER_TIMEOUT_MS + 30_000);
});
