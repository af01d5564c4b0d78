/**
 * QIDO-RS under abusive wild cards, against the stack that globalSetup started (the local
 * function host and the Cosmos DB emulator server): a pattern such as `*?*?*?*?*?*?*?*?*#`
 * must neither take seconds nor hold up the host, whose other routes (/api/health) keep
 * answering while it runs.
 */
import { type Container, CosmosClient } from '@azure/cosmos';

import type { SeriesDocument } from '../../shared/catalog/documents';
import { loadSettings } from '../../shared/config/settings';
import { authHeader, testStack } from './stackEnv';

/** The pattern: each further `?*` multiplied a backtracking matcher's time by about 5. */
const PATHOLOGICAL = '*?*?*?*?*?*?*?*?*#';
/** The same, with a suffix that no literal condition in the database can decide: the matcher must. */
const PATHOLOGICAL_UNDECIDED = '*?*?*?*?*?*?*?*?*#?';

const QUERY_BOUND_MS = 5000;
const HEALTH_BOUND_MS = 1000;

const studyUid = `2.25.${Date.now()}${Math.floor(Math.random() * 1000)}`;
/** SeriesDescription is LO: at most 64 characters, the longest value a matcher sees here. */
const DESCRIPTIONS: Record<string, string> = {
  '1': 'A'.repeat(64),
  '2': `${'A'.repeat(31)}#${'A'.repeat(32)}`,
  '3': `${'B'.repeat(40)}#`,
  '4': `${'C'.repeat(40)}#C`,
};
const seriesUid = (key: string) => `${studyUid}.${key}`;

let client: CosmosClient;
let container: Container;

beforeAll(async () => {
  const settings = loadSettings({ ...testStack().env });
  if (settings.cosmos.kind !== 'key') throw new Error('the test stack should use the emulator key');
  client = new CosmosClient({ endpoint: settings.cosmos.endpoint, key: settings.cosmos.key, connectionPolicy: { enableEndpointDiscovery: false } });
  container = client.database(settings.cosmosDatabase).container(settings.researchCatalogContainer);
  for (const [key, description] of Object.entries(DESCRIPTIONS)) {
    const uid = seriesUid(key);
    const doc: SeriesDocument = {
      id: `series:${uid}`,
      type: 'series',
      studyInstanceUid: studyUid,
      seriesInstanceUid: uid,
      modality: 'OT',
      updatedAt: '2024-01-01T00:00:00.000Z',
      dicom: {
        '0020000D': { vr: 'UI', Value: [studyUid] },
        '0020000E': { vr: 'UI', Value: [uid] },
        '00080060': { vr: 'CS', Value: ['OT'] },
        '0008103E': { vr: 'LO', Value: [description] },
      },
      numberOfSeriesRelatedInstances: 0,
      sopClassesInSeries: [],
    };
    await container.items.upsert(doc);
  }
});

afterAll(async () => {
  for (const key of Object.keys(DESCRIPTIONS)) {
    await container?.item(`series:${seriesUid(key)}`, studyUid).delete().catch(() => undefined);
  }
  client?.dispose();
});

interface Timed<T> {
  ms: number;
  value: T;
}

async function timed<T>(work: () => Promise<T>): Promise<Timed<T>> {
  const started = performance.now();
  const value = await work();
  return { ms: performance.now() - started, value };
}

/** A GET with the research role's token (health needs none, and ignores it). */
async function getJson(path: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${testStack().hostUrl}${path}`, { headers: authHeader('research') });
  return { status: res.status, body: await res.json() };
}

/**
 * Sends the query and, while it runs, asks /api/health again and again (at least three
 * times). Returns the query's answer and time, and the slowest health answer.
 */
async function queryWhileProbingHealth(path: string): Promise<{ query: Timed<{ status: number; body: unknown }>; slowestHealthMs: number; probes: number }> {
  const query = timed(() => getJson(path));
  let settled = false;
  void query.finally(() => (settled = true)).catch(() => undefined);
  let slowestHealthMs = 0;
  let probes = 0;
  while (!settled || probes < 3) {
    const health = await timed(() => getJson('/api/health'));
    expect(health.value.status).toBe(200);
    slowestHealthMs = Math.max(slowestHealthMs, health.ms);
    probes++;
    await new Promise((r) => setTimeout(r, 20));
  }
  return { query: await query, slowestHealthMs, probes };
}

const seriesOf = (body: unknown): string[] =>
  (body as Record<string, { Value?: unknown[] }>[])
    .map((ds) => ds['0020000E']?.Value?.[0])
    .filter((uid): uid is string => typeof uid === 'string' && uid.startsWith(`${studyUid}.`))
    .sort();

describe('QIDO-RS with pathological wild cards on the running host', () => {
  test.each([
    ['the issue\'s pattern', PATHOLOGICAL, ['3']],
    ['a pattern whose suffix only the matcher can decide', PATHOLOGICAL_UNDECIDED, ['4']],
  ])('given %s on 64-character descriptions, then the query answers within 5 s and /api/health within 1 s meanwhile', async (_name, pattern, expected) => {
    const { query, slowestHealthMs, probes } = await queryWhileProbingHealth(`/api/dicomweb/series?SeriesDescription=${encodeURIComponent(pattern)}&limit=1000`);
    expect(probes).toBeGreaterThanOrEqual(3);
    expect(slowestHealthMs).toBeLessThan(HEALTH_BOUND_MS);
    expect(query.ms).toBeLessThan(QUERY_BOUND_MS);
    expect([200, 400]).toContain(query.value.status);
    // Within the caps the pattern is honoured, and matched exactly.
    expect(query.value.status).toBe(200);
    expect(seriesOf(query.value.body)).toEqual(expected.map(seriesUid));
  });

  test('given a wild card pattern with more wild cards than allowed, then 400 QUERY_INVALID naming the parameter, promptly', async () => {
    const { ms, value } = await timed(() => getJson(`/api/dicomweb/series?SeriesDescription=${encodeURIComponent('*?'.repeat(40))}`));
    expect(ms).toBeLessThan(QUERY_BOUND_MS);
    expect(value.status).toBe(400);
    expect(value.body).toEqual({ error: { code: 'QUERY_INVALID', message: expect.stringContaining('SeriesDescription') } });
  });
});
