/**
 * The analytics export against the running stack (Azurite, the Cosmos DB emulator server): files
 * ingested from identified sources, then the export run as the timer runs it; DuckDB reads the
 * published snapshot (the files its manifest lists) and its counts equal the catalog's, and no
 * identifying value of the sources appears in any column name or value. A reader that resolved
 * the pointer before a second run reads its complete snapshot during and after that run.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';

import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { DuckDBInstance } from '@duckdb/node-api';

import { ctSliceBytes } from '../../bench/generate';
import { runAnalyticsExport } from '../../shared/analytics/exportRuntime';
import { POINTER_BLOB, type SnapshotManifest, type SnapshotPointer } from '../../shared/analytics/snapshot';
import { TABLES } from '../../shared/analytics/tables';
import { createCosmosClient } from '../../shared/catalog/cosmosCatalog';
import type { IngestionDocument } from '../../shared/catalog/documents';
import { loadAnalyticsSettings } from '../../shared/config/analyticsSettings';
import { loadSettings } from '../../shared/config/settings';
import { exportParquetMain } from '../../tools/exportParquet';
import { sourceDriver } from './sourceDrivers';
import { testStack } from './stackEnv';

const RUN = `parquet-${process.pid}-${Date.now() % 1_000_000}`;
const SEED = 800_000 + (Date.now() % 100_000);
const STUDIES = 3;
const PER_STUDY = 4;
const CONTAINER = `analytics-${process.pid}`;

// eslint-disable-next-line @typescript-eslint/no-require-imports
const dcmjs = require('dcmjs') as { data: { DicomMessage: { readFile(b: ArrayBuffer, o: { untilTag: string }): { dict: Record<string, { Value?: unknown[] }> } } } };

let work: string;
let container: ContainerClient;
let env: Record<string, string>;
const sources: Buffer[] = [];

/** Identifying values of the sources: names, IDs, accession numbers, original UIDs and dates. */
function identifyingValues(): Set<string> {
  const out = new Set<string>();
  for (const bytes of sources) {
    const dict = dcmjs.data.DicomMessage.readFile(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) as ArrayBuffer, { untilTag: '7FE00010' }).dict;
    for (const tag of ['00100010', '00100020', '00080050', '0020000D', '0020000E', '00080018', '00100030', '00080020', '00080080', '00080090']) {
      const v = dict[tag]?.Value?.[0];
      const text = typeof v === 'object' && v !== null ? (v as { Alphabetic?: string }).Alphabetic : v;
      if (typeof text === 'string' && text.length >= 4) out.add(text);
    }
  }
  return out;
}

async function readJson<T>(name: string): Promise<T> {
  return JSON.parse((await container.getBlobClient(name).downloadToBuffer()).toString('utf8')) as T;
}

/** Downloads what the manifest lists, as a reader would; the local paths by table. */
async function download(manifest: SnapshotManifest, into: string): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const t of TABLES) {
    out[t] = [];
    for (const f of manifest.tables[t].files) {
      const local = path.join(into, ...f.path.split('/'));
      await (await import('node:fs/promises')).mkdir(path.dirname(local), { recursive: true });
      await container.getBlobClient(f.path).downloadToFile(local);
      (out[t] as string[]).push(local);
    }
  }
  return out;
}

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'analytics-it-'));
  env = { ...testStack().env, ANALYTICS_CONTAINER: CONTAINER, PARQUET_EXPORT_PAGE_SIZE: '200' };
  const settings = loadAnalyticsSettings(env);
  container = BlobServiceClient.fromConnectionString(settings.storage.kind === 'connectionString' ? settings.storage.connectionString : '').getContainerClient(CONTAINER);
  const driver = sourceDriver('blob');
  const puts: Promise<unknown>[] = [];
  for (let s = 0; s < STUDIES; s++) {
    for (let i = 1; i <= PER_STUDY; i++) {
      const bytes = ctSliceBytes({ seed: SEED, study: s, instance: i });
      sources.push(bytes);
      puts.push(driver.put(`${RUN}/s${s}/${i}.dcm`, bytes));
    }
  }
  await Promise.all(puts);
  await driver.settle(120_000);
}, 180_000);

afterAll(async () => {
  await container?.deleteIfExists();
  await rm(work, { recursive: true, force: true });
});

test('given ingested files, when the export runs, then DuckDB reads the published snapshot with the catalog\'s counts (total and per modality) and no identifying value of the sources', async () => {
  const r = await runAnalyticsExport(loadAnalyticsSettings(env));
  expect(r.published).toBe(true);
  const pointer = await readJson<SnapshotPointer>(POINTER_BLOB);
  expect(pointer.snapshotId).toBe(r.snapshotId);
  const manifest = await readJson<SnapshotManifest>(pointer.manifest);
  const files = await download(manifest, path.join(work, 'a'));

  // The catalog's own counts, for this run's studies (other tests write to the same catalog).
  const s = loadSettings(testStack().env);
  const db = createCosmosClient(s.cosmos).database(s.cosmosDatabase);
  const { resources: ingestions } = await db.container(s.indexContainer).items.query<IngestionDocument>({ query: 'SELECT * FROM c WHERE STARTSWITH(c.blobName, @p)', parameters: [{ name: '@p', value: `${RUN}/` }] }).fetchAll();
  const studies = [...new Set(ingestions.flatMap((d) => (d.research ? [d.research.studyInstanceUid] : [])))].sort();
  expect(studies).toHaveLength(STUDIES);
  const { resources: docs } = await db.container(s.researchCatalogContainer).items.query<{ type: string; modality?: string }>({
    query: 'SELECT c.type, c.modality FROM c WHERE ARRAY_CONTAINS(@s, c.studyInstanceUid)',
    parameters: [{ name: '@s', value: studies }],
  }).fetchAll();

  const duck = await DuckDBInstance.create(':memory:');
  const c = await duck.connect();
  try {
    const list = (t: string) => `read_parquet([${(files[t] ?? []).map((f) => `'${f}'`).join(',')}], hive_partitioning = true, union_by_name = true)`;
    const inList = studies.map((u) => `'${u}'`).join(',');
    const counts: Record<string, number> = {};
    for (const t of TABLES) {
      counts[t] = Number((await c.runAndReadAll(`SELECT count(*) AS n FROM ${list(t)} WHERE study_instance_uid IN (${inList})`)).getRowObjectsJson()[0]?.n);
      // The snapshot as a whole against its manifest.
      expect(Number((await c.runAndReadAll(`SELECT count(*) AS n FROM ${list(t)}`)).getRowObjectsJson()[0]?.n)).toBe(manifest.tables[t].rows);
    }
    expect(counts).toEqual({ instances: docs.filter((d) => d.type === 'instance').length, series: docs.filter((d) => d.type === 'series').length, studies: docs.filter((d) => d.type === 'study').length });
    expect(counts.instances).toBe(STUDIES * PER_STUDY);
    const byModality = (await c.runAndReadAll(`SELECT modality, count(*) AS n FROM ${list('instances')} WHERE study_instance_uid IN (${inList}) GROUP BY modality`)).getRowObjectsJson();
    const expected: Record<string, number> = {};
    for (const d of docs.filter((x) => x.type === 'instance')) expected[d.modality ?? ''] = (expected[d.modality ?? ''] ?? 0) + 1;
    expect(Object.fromEntries(byModality.map((x) => [String(x.modality), Number(x.n)]))).toEqual(expected);

    // No identified field or value: every column name, and every value of this run's rows, as text.
    const identifying = identifyingValues();
    expect(identifying.size).toBeGreaterThan(STUDIES * 3);
    for (const t of TABLES) {
      const rows = (await c.runAndReadAll(`SELECT * FROM ${list(t)} WHERE study_instance_uid IN (${inList})`)).getRowObjectsJson();
      expect(rows.length).toBeGreaterThan(0);
      const text = JSON.stringify(rows);
      const names = Object.keys(rows[0] ?? {});
      for (const n of names) expect(n).not.toMatch(/source|original|accession|birth|institution|physician|patient_name|mrn/i);
      for (const v of identifying) expect({ table: t, value: v, present: text.includes(v) }).toEqual({ table: t, value: v, present: false });
    }
  } finally {
    c.closeSync();
    duck.closeSync();
  }
}, 300_000);

test('given a reader that resolved the pointer, when a second run writes and publishes, then the reader reads the complete previous snapshot during and after it', async () => {
  const first = await runAnalyticsExport(loadAnalyticsSettings(env));
  const pointer = await readJson<SnapshotPointer>(POINTER_BLOB);
  expect(pointer.snapshotId).toBe(first.snapshotId);
  const manifest = await readJson<SnapshotManifest>(pointer.manifest);
  const readable = async (into: string) => {
    const files = await download(manifest, into);
    const duck = await DuckDBInstance.create(':memory:');
    const c = await duck.connect();
    try {
      return Object.fromEntries(await Promise.all(TABLES.map(async (t) => [t, Number((await c.runAndReadAll(`SELECT count(*) AS n FROM read_parquet([${(files[t] ?? []).map((f) => `'${f}'`).join(',')}])`)).getRowObjectsJson()[0]?.n)] as const)));
    } finally {
      c.closeSync();
      duck.closeSync();
    }
  };
  const expected = Object.fromEntries(TABLES.map((t) => [t, manifest.tables[t].rows]));
  let during: Record<string, number> = {};
  let pointerDuring = '';
  const second = await runAnalyticsExport(loadAnalyticsSettings(env), {
    beforePublish: async () => {
      pointerDuring = (await readJson<SnapshotPointer>(POINTER_BLOB)).snapshotId;
      during = await readable(path.join(work, 'during'));
    },
  });
  expect(second.published).toBe(true);
  expect(pointerDuring).toBe(first.snapshotId);
  expect(during).toEqual(expected);
  expect((await readJson<SnapshotPointer>(POINTER_BLOB)).snapshotId).toBe(second.snapshotId);
  expect(await readable(path.join(work, 'after'))).toEqual(expected);
}, 300_000);

test('given `npm run export-parquet -- --download <folder>`, then it publishes a snapshot and copies exactly the files its manifest lists', async () => {
  const lines: string[] = [];
  const into = path.join(work, 'cli');
  expect(await exportParquetMain(['--download', into], env, (l) => lines.push(l))).toBe(0);
  const pointer = await readJson<SnapshotPointer>(POINTER_BLOB);
  expect(lines.join('\n')).toContain(`published: snapshot ${pointer.snapshotId}`);
  const manifest = await readJson<SnapshotManifest>(pointer.manifest);
  const { readdir, stat } = await import('node:fs/promises');
  const local = (await readdir(into, { recursive: true })).map(String).filter((f) => f.endsWith('.parquet')).sort();
  const listed = TABLES.flatMap((t) => manifest.tables[t].files.map((f) => f.path.slice(`snapshots/${manifest.snapshotId}/`.length))).sort();
  expect(local.map((f) => f.split(path.sep).join('/'))).toEqual(listed);
  for (const t of TABLES) for (const f of manifest.tables[t].files) expect((await stat(path.join(into, f.path.slice(`snapshots/${manifest.snapshotId}/`.length)))).size).toBe(f.bytes);
}, 300_000);
