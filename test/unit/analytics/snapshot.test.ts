/**
 * The analytics export (shared/analytics): rows, partitioning, the manifest and the atomic
 * publish, with an in-memory analytics store and catalog feed behind the same interfaces and
 * the real DuckDB writer (files on a temporary disk folder).
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';

import { DuckDBInstance } from '@duckdb/node-api';

import { generateCatalog } from '../../../bench/catalogDocs';
import { DuckDbColumnarWriter, partitionOf } from '../../../shared/analytics/duckdbWriter';
import {
  type AnalyticsStore,
  type CatalogFeed,
  exportCatalogSnapshot,
  type ExportDeps,
  POINTER_BLOB,
  type SnapshotManifest,
  type SnapshotPointer,
  snapshotsToRemove,
} from '../../../shared/analytics/snapshot';
import { isoDate, partitionValue, rowOf, SCHEMAS, TABLES, yearOf } from '../../../shared/analytics/tables';
import type { InstanceDocument, ResearchDocument } from '../../../shared/catalog/documents';

/** The analytics container in memory: blobs with ETags, conditional pointer writes, and the order of writes. */
class MemoryAnalyticsStore implements AnalyticsStore {
  readonly blobs = new Map<string, { body: Buffer; etag: string }>();
  readonly writes: string[] = [];
  private etags = 0;

  private put(name: string, body: Buffer): void {
    this.blobs.set(name, { body, etag: `"${++this.etags}"` });
    this.writes.push(name);
  }
  async readPointer() {
    const b = this.blobs.get(POINTER_BLOB);
    return b ? { pointer: JSON.parse(b.body.toString()) as SnapshotPointer, version: b.etag } : undefined;
  }
  async uploadFile(name: string, localPath: string) {
    this.put(name, await readFile(localPath));
  }
  async putJson(name: string, value: unknown) {
    this.put(name, Buffer.from(JSON.stringify(value)));
  }
  async publish(pointer: SnapshotPointer, expected: string | undefined) {
    const current = this.blobs.get(POINTER_BLOB);
    if (current?.etag !== expected) return false;
    this.put(POINTER_BLOB, Buffer.from(JSON.stringify(pointer)));
    return true;
  }
  async listSnapshots() {
    return [...new Set([...this.blobs.keys()].filter((k) => k.startsWith('snapshots/')).map((k) => k.split('/')[1] as string))].sort();
  }
  async deleteSnapshot(id: string) {
    let n = 0;
    for (const k of [...this.blobs.keys()]) {
      if (!k.startsWith(`snapshots/${id}/`)) continue;
      this.blobs.delete(k);
      n++;
    }
    return n;
  }
  json<T>(name: string): T {
    const b = this.blobs.get(name);
    if (!b) throw new Error(`no blob ${name}`);
    return JSON.parse(b.body.toString()) as T;
  }
}

function feedOf(docs: ResearchDocument[], pageSize = 7, failAfterPages?: number): CatalogFeed {
  return {
    async *pages(options = {}) {
      const size = options.pageSize ?? pageSize;
      for (let i = 0, p = 0; i < docs.length; i += size, p++) {
        if (failAfterPages !== undefined && p === failAfterPages) throw new Error('feed broke');
        yield docs.slice(i, i + size);
      }
    },
  };
}

let tmp: string;
beforeAll(async () => (tmp = await mkdtemp(path.join(os.tmpdir(), 'analytics-unit-'))));
afterAll(async () => rm(tmp, { recursive: true, force: true }));

let clock = Date.UTC(2026, 11, 2, 10, 0, 0);
function deps(store: AnalyticsStore, docs: ResearchDocument[], extra: Partial<ExportDeps> = {}): ExportDeps {
  return { feed: feedOf(docs), store, openWriter: () => DuckDbColumnarWriter.open({ tempDir: tmp, memoryLimitMb: 64 }), now: () => new Date((clock += 1000)), ...extra };
}

const catalog = [...generateCatalog({ instances: 600, seed: 7 })];
const count = (type: string, modality?: string) => catalog.filter((d) => d.type === type && (modality === undefined || (d as { modality?: string }).modality === modality)).length;

describe('rows', () => {
  test('given each document type, then its row has exactly the table\'s columns', () => {
    for (const type of ['instance', 'series', 'study'] as const) {
      const doc = catalog.find((d) => d.type === type) as ResearchDocument;
      const mapped = rowOf(doc);
      expect(mapped).toBeDefined();
      expect(Object.keys(mapped?.row ?? {}).sort()).toEqual(SCHEMAS[mapped?.table ?? 'instances'].map((c) => c.name).sort());
    }
  });

  test('given an instance document, then the keyed source hashes, key id and frame index are not in its row', () => {
    const doc = { ...(catalog.find((d) => d.type === 'instance') as InstanceDocument), sourceKey: 'k-secret', sourceRank: 'r-secret', sourceVersion: 'v-secret', frames: { kind: 'none' as const } };
    const text = JSON.stringify(rowOf(doc));
    for (const hidden of ['k-secret', 'r-secret', 'v-secret', doc.deidentification.keyId]) expect(text).not.toContain(hidden);
  });

  test('given the shifted StudyDate, then year and date come from it; a missing or odd date gives NULL', () => {
    expect(yearOf({ '00080020': { vr: 'DA', Value: ['20190304'] } })).toBe(2019);
    expect(yearOf({})).toBeNull();
    expect(isoDate('20190304')).toBe('2019-03-04');
    expect(isoDate('20190231')).toBeNull();
    expect(isoDate('2019')).toBeNull();
  });

  test('given a modality with characters a folder name must not carry, then the partition value cannot add a path level', () => {
    expect(partitionValue('CT')).toBe('CT');
    expect(partitionValue('../x/y')).toBe('___x_y');
    expect(partitionValue('  ')).toBeNull();
    expect(partitionOf('modality=CT/year=__HIVE_DEFAULT_PARTITION__/data_0.parquet')).toEqual({ modality: 'CT', year: null });
  });
});

describe('export', () => {
  test('given a catalog, then the manifest lists every file, partitioned by modality and year, with row counts equal to the catalog\'s and bytes equal to the blobs\'', async () => {
    const store = new MemoryAnalyticsStore();
    const r = await exportCatalogSnapshot(deps(store, catalog), { pageSize: 50 });
    expect(r.published).toBe(true);
    expect(r.rows).toEqual({ instances: count('instance'), series: count('series'), studies: count('study') });
    const manifest = store.json<SnapshotManifest>(store.json<SnapshotPointer>(POINTER_BLOB).manifest);
    expect(manifest.documentsRead).toBe(catalog.length);
    for (const t of TABLES) {
      const table = manifest.tables[t];
      expect(table.columns).toEqual(SCHEMAS[t]);
      expect(table.rows).toBe(table.files.reduce((n, f) => n + f.rows, 0));
      for (const f of table.files) {
        expect(f.path).toMatch(new RegExp(`^snapshots/${manifest.snapshotId}/${t}/modality=[A-Z-]+/year=\\d{4}/[^/]+\\.parquet$`));
        expect(store.blobs.get(f.path)?.body.length).toBe(f.bytes);
      }
    }
    for (const m of ['CT', 'MR', 'DX', 'PT', 'US']) {
      expect(manifest.tables.instances.files.filter((f) => f.partition.modality === m).reduce((n, f) => n + f.rows, 0)).toBe(count('instance', m));
      expect(manifest.tables.series.files.filter((f) => f.partition.modality === m).reduce((n, f) => n + f.rows, 0)).toBe(count('series', m));
    }
    // Every year of the catalog has its folder.
    const years = new Set(catalog.filter((d) => d.type === 'instance').map((d) => String(yearOf(d.dicom))));
    expect(new Set(manifest.tables.instances.files.map((f) => f.partition.year))).toEqual(years);
  });

  test('given the files DuckDB wrote, then DuckDB reads them back with the partition columns and the catalog\'s counts', async () => {
    const writer = await DuckDbColumnarWriter.open({ tempDir: tmp, memoryLimitMb: 64 });
    try {
      for (const d of catalog) {
        const m = rowOf(d);
        if (m) await writer.append(m.table, m.row);
      }
      const files = await writer.finish();
      const db = await DuckDBInstance.create(':memory:');
      const c = await db.connect();
      const list = files.filter((f) => f.table === 'instances').map((f) => `'${f.localPath}'`).join(',');
      const rows = (await c.runAndReadAll(`SELECT modality, count(*) AS n FROM read_parquet([${list}], hive_partitioning = true) GROUP BY modality ORDER BY modality`)).getRowObjectsJson();
      expect(Object.fromEntries(rows.map((r) => [r.modality, Number(r.n)]))).toEqual(Object.fromEntries(['CT', 'DX', 'MR', 'PT', 'US'].map((m) => [m, count('instance', m)]).filter(([, n]) => n !== 0)));
      c.closeSync();
      db.closeSync();
    } finally {
      await writer.close();
    }
  });

  test('given a run, then the pointer is written last: after every file and the manifest', async () => {
    const store = new MemoryAnalyticsStore();
    const r = await exportCatalogSnapshot(deps(store, catalog));
    expect(store.writes[store.writes.length - 1]).toBe(POINTER_BLOB);
    expect(store.writes[store.writes.length - 2]).toBe(r.manifest);
    expect(store.writes.filter((w) => w === POINTER_BLOB)).toHaveLength(1);
  });

  test('given a reader that resolved the pointer, when a second run writes its files, then the reader still reads the complete first snapshot, and after the publish too', async () => {
    const store = new MemoryAnalyticsStore();
    await exportCatalogSnapshot(deps(store, catalog));
    const first = store.json<SnapshotPointer>(POINTER_BLOB);
    const readAll = (p: SnapshotPointer) => {
      const m = store.json<SnapshotManifest>(p.manifest);
      return TABLES.flatMap((t) => m.tables[t].files.map((f) => store.blobs.get(f.path)?.body.length === f.bytes));
    };
    let during: boolean[] = [];
    let pointerDuring: SnapshotPointer | undefined;
    const bigger = [...generateCatalog({ instances: 900, seed: 8 })];
    const second = await exportCatalogSnapshot(deps(store, bigger), {
      beforePublish: async () => {
        pointerDuring = store.json<SnapshotPointer>(POINTER_BLOB);
        during = readAll(first);
      },
    });
    expect(pointerDuring).toEqual(first);
    expect(during.length).toBeGreaterThan(0);
    expect(during.every(Boolean)).toBe(true);
    // Published, and the replaced snapshot is kept for readers still on it.
    expect(store.json<SnapshotPointer>(POINTER_BLOB)).toMatchObject({ snapshotId: second.snapshotId, previousSnapshotId: first.snapshotId });
    expect(readAll(first).every(Boolean)).toBe(true);
  });

  test('given three runs, then only the current snapshot and the one it replaced remain', async () => {
    const store = new MemoryAnalyticsStore();
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await exportCatalogSnapshot(deps(store, catalog.slice(0, 200)))).snapshotId);
    expect(await store.listSnapshots()).toEqual(ids.slice(1));
  });

  test('given two runs from the same pointer, when one publishes first, then the other does not publish and deletes its own snapshot', async () => {
    const store = new MemoryAnalyticsStore();
    await exportCatalogSnapshot(deps(store, catalog.slice(0, 100)));
    let winner = '';
    const loser = await exportCatalogSnapshot(deps(store, catalog.slice(0, 150)), {
      beforePublish: async () => {
        winner = (await exportCatalogSnapshot(deps(store, catalog.slice(0, 120)))).snapshotId;
      },
    });
    expect(loser.published).toBe(false);
    expect(store.json<SnapshotPointer>(POINTER_BLOB).snapshotId).toBe(winner);
    expect(await store.listSnapshots()).not.toContain(loser.snapshotId);
    expect(await store.listSnapshots()).toContain(winner);
  });

  test('given a run whose feed fails mid-way, then the pointer is unchanged and no new snapshot is left', async () => {
    const store = new MemoryAnalyticsStore();
    const first = await exportCatalogSnapshot(deps(store, catalog.slice(0, 100)));
    const before = await store.listSnapshots();
    await expect(exportCatalogSnapshot(deps(store, catalog, { feed: feedOf(catalog, 50, 3) }))).rejects.toThrow('feed broke');
    expect(store.json<SnapshotPointer>(POINTER_BLOB).snapshotId).toBe(first.snapshotId);
    expect(await store.listSnapshots()).toEqual(before);
  });

  test('given the snapshots present, then a publish removes only those older than the one it replaced (never a newer run in flight)', () => {
    expect(snapshotsToRemove(['a', 'b', 'c', 'd', 'e'], 'd', 'c')).toEqual(['a', 'b']);
    expect(snapshotsToRemove(['a', 'b', 'c', 'd', 'e'], 'c', 'b')).toEqual(['a']);
    expect(snapshotsToRemove(['a'], 'a', undefined)).toEqual([]);
  });
});
