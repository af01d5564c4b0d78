/**
 * The statistics dashboard in a real browser: Debian's chromium, driven by playwright-core,
 * opens `/dashboard/` as local/viewer.ts serves it (the same as `npm start`) against the
 * stack's API. A generated catalog (research documents as the ingestion writes them, with a
 * manufacturer of its own to filter on) is written to the stack's Cosmos DB server; the
 * numbers the page draws (each chart's data, read from Chart.js in the page) and lists (the
 * table beside each chart) must equal a brute-force count of those documents, with no cell
 * under the minimum. UPDATE_DASHBOARD_SCREENSHOT=1 writes docs/images/dashboard.png.
 */
import { type Container, type JSONObject } from '@azure/cosmos';
import { createHash, randomBytes } from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';
import { type Browser, chromium } from 'playwright-core';

import { generateCatalog } from '../../bench/catalogDocs';
import { closeServer, listen } from '../../local/net';
import { ensureViewerBuild, startViewer, type ViewerServer } from '../../local/viewer';
import { createCosmosClient } from '../../shared/catalog/cosmosCatalog';
import type { InstanceDocument, ResearchDocument } from '../../shared/catalog/documents';
import { loadSettings } from '../../shared/config/settings';
import { type Breakdown,BREAKDOWNS } from '../../shared/statistics/aggregate';
import { testStack } from './stackEnv';

const projectRoot = path.resolve(__dirname, '..', '..');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const MARK = 'ACME';
const SEED = 4200 + (process.pid % 500);

let viewer: ViewerServer;
let browser: Browser;
let catalog: Container;
let minCell: number;
let shotDir: string;
const instances: InstanceDocument[] = [];

/** The generated documents, their manufacturer marked so that a filter selects them alone. */
function marked(doc: ResearchDocument): ResearchDocument {
  const maker = doc.dicom['00080070']?.Value?.[0];
  if (typeof maker !== 'string') return doc;
  return { ...doc, dicom: { ...doc.dicom, '00080070': { vr: 'LO', Value: [`${MARK} ${maker}`] } } } as ResearchDocument;
}

beforeAll(async () => {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`no chromium at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM_PATH)`);
  const stack = testStack();
  const settings = loadSettings(stack.env);
  minCell = settings.statisticsMinCell;
  catalog = createCosmosClient(settings.cosmos).database(settings.cosmosDatabase).container(settings.researchCatalogContainer);
  const docs = [...generateCatalog({ instances: 6000, seed: SEED })].map(marked);
  for (const d of docs) if (d.type === 'instance') instances.push(d);
  for (let i = 0; i < docs.length; i += 100) {
    const result = await catalog.items.bulk(docs.slice(i, i + 100).map((d) => ({ operationType: 'Create' as const, resourceBody: d as unknown as JSONObject })));
    expect(result.every((r) => r.statusCode < 300)).toBe(true);
  }
  const distDir = await ensureViewerBuild(projectRoot);
  viewer = await startViewer({ distDir, dicomWebRoot: `${stack.hostUrl}/api/dicomweb`, port: 0, token: async () => stack.tokens.research });
  shotDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dashboard-test-'));
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--use-gl=swiftshader', '--enable-unsafe-swiftshader', '--ignore-gpu-blocklist'] });
}, 300_000);

afterAll(async () => {
  await browser?.close();
  await viewer?.stop();
  if (shotDir) fs.rmSync(shotDir, { recursive: true, force: true });
});

function text(d: InstanceDocument, tag: string): string {
  const v = d.dicom[tag]?.Value?.[0];
  return typeof v === 'string' || typeof v === 'number' ? String(v).trim() : '';
}

const VALUE: Record<Breakdown, (d: InstanceDocument) => string> = {
  modality: (d) => d.modality,
  bodyPart: (d) => text(d, '00180015').toUpperCase(),
  sopClass: (d) => d.sopClassUid,
  manufacturerModel: (d) => `${text(d, '00080070')} / ${text(d, '00081090')}`,
  year: (d) => text(d, '00080020').slice(0, 4),
  transferSyntax: (d) => d.transferSyntaxUid,
};

interface Counts { studies: number; series: number; instances: number; bytes: number }

function countOf(docs: InstanceDocument[]): Counts {
  return {
    studies: new Set(docs.map((d) => d.studyInstanceUid)).size,
    series: new Set(docs.map((d) => d.seriesInstanceUid)).size,
    instances: docs.length,
    bytes: docs.reduce((n, d) => n + d.size, 0),
  };
}

function expectedCells(docs: InstanceDocument[], b: Breakdown): Map<string, Counts> {
  const groups = new Map<string, InstanceDocument[]>();
  for (const d of docs) groups.set(VALUE[b](d), [...(groups.get(VALUE[b](d)) ?? []), d]);
  return new Map([...groups].map(([v, list]) => [v, countOf(list)]));
}

/** Waits until the page has drawn an answer; throws with the page's own error line otherwise. */
async function ready(page: import('playwright-core').Page): Promise<void> {
  await page.waitForSelector('body[data-state="ready"], body[data-state="error"]', { state: 'attached', timeout: 60_000 });
  const state = await page.getAttribute('body', 'data-state');
  if (state !== 'ready') throw new Error(`the dashboard shows an error: ${await page.textContent('#status')}`);
}

interface PageReading {
  totals: Record<string, string>;
  cohortHref: string | null;
  cohortStudies: string | null;
  breakdowns: Record<string, { rows: { value: string; counts: Record<string, number> }[]; chart: { labels: string[]; studies: number[]; series: number[] }; withheld: number }>;
}

/** What the page shows: the tiles, each table's rows and each chart's drawn data (from Chart.js in the page). */
function readPage(page: import('playwright-core').Page): Promise<PageReading> {
  return page.evaluate(() => {
    // Runs in the page (the tests' TypeScript has no DOM types): the little of the DOM it uses.
    interface El { dataset: Record<string, string | undefined>; querySelectorAll(s: string): Iterable<El>; querySelector(s: string): El | null; getAttribute(n: string): string | null }
    const g = globalThis as unknown as { document: El; Chart: { getChart(c: El): { data: { labels: string[]; datasets: { data: number[] }[] } } | undefined } };
    const totals: Record<string, string> = {};
    for (const el of g.document.querySelectorAll('[data-total]')) totals[el.dataset.total ?? ''] = el.dataset.value ?? '';
    const breakdowns: PageReading['breakdowns'] = {};
    for (const card of g.document.querySelectorAll('[data-breakdown]')) {
      const rows = [...card.querySelectorAll('tbody tr')].map((tr) => {
        const counts: Record<string, number> = {};
        for (const td of tr.querySelectorAll('td[data-count]')) counts[td.dataset.count ?? ''] = Number(td.dataset.value);
        return { value: tr.dataset.value ?? '', counts };
      });
      const canvas = card.querySelector('canvas');
      const chart = canvas ? g.Chart.getChart(canvas) : undefined;
      breakdowns[card.dataset.breakdown ?? ''] = {
        rows,
        chart: { labels: chart?.data.labels ?? [], studies: chart?.data.datasets[0]?.data ?? [], series: chart?.data.datasets[1]?.data ?? [] },
        withheld: Number(card.dataset.withheld),
      };
    }
    const link = g.document.querySelector('#cohort-link');
    return { totals, breakdowns, cohortHref: link?.getAttribute('href') ?? null, cohortStudies: link?.dataset.studies ?? null };
  });
}


/**
 * A stand-in OpenID provider for the sign-in test: discovery, an authorize endpoint that
 * consents at once (302 back with a code), and a token endpoint that gives `accessToken` only
 * for the code it issued, the same redirect URI and a PKCE verifier whose S256 is the challenge.
 */
async function startStandInProvider(accessToken: string): Promise<{ url: string; authorized: URLSearchParams[]; exchanges: { ok: boolean; reason: string }[]; stop(): Promise<void> }> {
  const authorized: URLSearchParams[] = [];
  const exchanges: { ok: boolean; reason: string }[] = [];
  const codes = new Map<string, { challenge: string; redirectUri: string; clientId: string }>();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://provider');
    // Entra's shape: everything under the tenant's authority.
    url.pathname = url.pathname.replace(/^\/tenant\/v2\.0/, '');
    const cors = { 'access-control-allow-origin': '*' };
    if (url.pathname === '/.well-known/openid-configuration') {
      res.writeHead(200, { 'content-type': 'application/json', ...cors });
      res.end(JSON.stringify({ issuer: base, authorization_endpoint: `${base}/authorize`, token_endpoint: `${base}/token` }));
      return;
    }
    if (url.pathname === '/authorize') {
      authorized.push(url.searchParams);
      const code = randomBytes(12).toString('hex');
      codes.set(code, { challenge: url.searchParams.get('code_challenge') ?? '', redirectUri: url.searchParams.get('redirect_uri') ?? '', clientId: url.searchParams.get('client_id') ?? '' });
      const back = new URL(url.searchParams.get('redirect_uri') ?? '');
      back.searchParams.set('code', code);
      back.searchParams.set('state', url.searchParams.get('state') ?? '');
      res.writeHead(302, { location: back.href });
      res.end();
      return;
    }
    if (url.pathname === '/token' && req.method === 'POST') {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString('utf8')));
      req.on('end', () => {
        const form = new URLSearchParams(body);
        const issued = codes.get(form.get('code') ?? '');
        codes.delete(form.get('code') ?? '');
        const verifier = form.get('code_verifier') ?? '';
        const reason = !issued
          ? 'unknown code'
          : form.get('grant_type') !== 'authorization_code'
            ? 'grant type'
            : issued.redirectUri !== form.get('redirect_uri') || issued.clientId !== form.get('client_id')
              ? 'redirect URI or client'
              : createHash('sha256').update(verifier).digest('base64url') !== issued.challenge
                ? 'PKCE verifier'
                : '';
        exchanges.push({ ok: reason === '', reason });
        res.writeHead(reason ? 400 : 200, { 'content-type': 'application/json', ...cors });
        res.end(JSON.stringify(reason ? { error: 'invalid_grant' } : { access_token: accessToken, token_type: 'Bearer', expires_in: 3600 }));
      });
      return;
    }
    res.writeHead(404, cors);
    res.end();
  });
  const port = await listen(server, 0, '127.0.0.1', 'stand-in OpenID provider');
  const base = `http://127.0.0.1:${port}/tenant/v2.0`;
  return { url: base, authorized, exchanges, stop: () => closeServer(server) };
}

describe('the statistics dashboard that npm start serves at /dashboard/', () => {
  it('given the page and its assets, then Chart.js comes from the project (no CDN) and config.js names the API', async () => {
    const html = await (await fetch(viewer.dashboardUrl)).text();
    expect(html).toContain('vendor/chart.umd.min.js');
    expect(html).not.toMatch(/https?:\/\//);
    const lib = await fetch(`${viewer.dashboardUrl}vendor/chart.umd.min.js`);
    expect(lib.status).toBe(200);
    expect(await lib.text()).toContain('Chart');
    const config = await (await fetch(`${viewer.dashboardUrl}config.js`)).text();
    expect(config).toContain(`"apiRoot":"${testStack().hostUrl}/api"`);
    expect((await fetch(`${viewer.url}/dashboard`, { redirect: 'manual' })).headers.get('location')).toBe('/dashboard/');
    expect((await fetch(`${viewer.dashboardUrl}..%2f..%2fpackage.json`)).status).toBe(404);
  });

  it('given a manufacturer filter, then every chart and table shows the brute-force counts of the matching documents, none under the minimum, and the cohort link opens its studies', async () => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1700 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${viewer.dashboardUrl}?Manufacturer=${MARK}*`);
    await ready(page);
    const reading = await readPage(page);
    expect(errors).toEqual([]);

    const total = countOf(instances);
    expect(total.studies).toBeGreaterThanOrEqual(minCell);
    expect(reading.totals).toEqual({ studies: String(total.studies), series: String(total.series), instances: String(total.instances), bytes: String(total.bytes) });
    for (const b of BREAKDOWNS) {
      const expected = expectedCells(instances, b);
      const shown = reading.breakdowns[b];
      if (!shown) throw new Error(`no ${b} chart on the page`);
      expect(shown.rows.length + shown.withheld).toBe(expected.size);
      for (const row of shown.rows) {
        expect(row.counts).toEqual(expected.get(row.value));
        expect(row.counts.studies).toBeGreaterThanOrEqual(minCell);
      }
      // The chart draws the table's numbers, in the same order.
      expect(shown.chart.studies).toEqual(shown.rows.map((r) => r.counts.studies));
      expect(shown.chart.series).toEqual(shown.rows.map((r) => r.counts.series));
      expect(shown.chart.labels.length).toBe(shown.rows.length);
    }
    // Every generated study carries the mark, and the cohort link names only them.
    const studies = new Set(instances.map((d) => d.studyInstanceUid));
    const linked = decodeURIComponent(new URL(reading.cohortHref ?? '', viewer.url).searchParams.get('StudyInstanceUIDs') ?? '').split(',');
    expect(Number(reading.cohortStudies)).toBe(Math.min(50, studies.size));
    for (const uid of linked) expect(studies.has(uid)).toBe(true);
    expect(new URL(reading.cohortHref ?? '', viewer.url).pathname).toBe('/viewer');

    const shot = process.env.UPDATE_DASHBOARD_SCREENSHOT === '1' ? path.join(projectRoot, 'docs', 'images', 'dashboard.png') : path.join(shotDir, 'dashboard.png');
    fs.mkdirSync(path.dirname(shot), { recursive: true });
    await page.screenshot({ path: shot, fullPage: true });
    expect(fs.statSync(shot).size).toBeGreaterThan(10_000);
    await page.close();
  });

  it('given the form, then a narrower filter redraws the charts with the narrower counts', async () => {
    const page = await browser.newPage();
    await page.goto(`${viewer.dashboardUrl}?Manufacturer=${MARK}*`);
    await ready(page);
    await page.fill('input[name="Modality"]', 'CT');
    await page.click('button[type="submit"]');
    await page.waitForFunction(() => (globalThis as unknown as { location: { search: string } }).location.search.includes('Modality=CT'));
    await ready(page);
    const reading = await readPage(page);
    const ct = instances.filter((d) => d.modality === 'CT');
    const total = countOf(ct);
    if (total.studies >= minCell) expect(reading.totals.instances).toBe(String(total.instances));
    else expect(reading.totals.instances).toBe('');
    expect(reading.breakdowns.modality?.rows.map((r) => r.value)).toEqual(total.studies >= minCell ? ['CT'] : []);
    await page.close();
  });

  it('given the dashboard hosted without a token and an OpenID provider in its config, then it signs in (code flow with PKCE), keeps its filters, and draws the counts', async () => {
    const provider = await startStandInProvider(testStack().tokens.research);
    const stack = testStack();
    const hosted = await startViewer({ distDir: await ensureViewerBuild(projectRoot), dicomWebRoot: `${stack.hostUrl}/api/dicomweb`, port: 0, dashboardOidc: { authority: provider.url, client_id: 'dashboard-spa', scope: 'api://vna/access_as_user' } });
    try {
      const config = await (await fetch(`${hosted.dashboardUrl}config.js`)).text();
      expect(config).not.toContain('"token"');
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`${hosted.dashboardUrl}?Manufacturer=${MARK}*`);
      await ready(page);
      expect(errors).toEqual([]);
      // One trip to the provider, with PKCE (S256) and this page as the redirect URI; one exchange, accepted.
      expect(provider.authorized).toHaveLength(1);
      const asked = provider.authorized[0]!;
      expect(asked.get('code_challenge_method')).toBe('S256');
      expect(asked.get('response_type')).toBe('code');
      expect(asked.get('redirect_uri')).toBe(hosted.dashboardUrl);
      expect(provider.exchanges).toEqual([{ ok: true, reason: '' }]);
      // Back on the page with its own query (no code or state left in it), and the API's numbers drawn.
      const search = await page.evaluate(() => (globalThis as unknown as { location: { search: string } }).location.search);
      expect(new URLSearchParams(search).get('Manufacturer')).toBe(`${MARK}*`);
      expect(search).not.toMatch(/code=|state=/);
      expect((await readPage(page)).totals.instances).toBe(String(countOf(instances).instances));
      // A reload uses the kept token: no second trip to the provider.
      await page.reload();
      await ready(page);
      expect(provider.authorized).toHaveLength(1);
      await page.close();
    } finally {
      await hosted.stop();
      await provider.stop();
    }
  });
});
