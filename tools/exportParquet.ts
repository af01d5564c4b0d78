/**
 * `npm run export-parquet [-- --download <folder>]`: one analytics export run (as the timer
 * function runs it), printing the snapshot's figures; with `--download`, then copies the
 * published snapshot's files (as its manifest lists them) into <folder>/<table>/... for DuckDB.
 *
 * Settings: CosmosDb, COSMOS_DATABASE, COSMOS_RESEARCH_CONTAINER, ResearchStorage (else
 * SourceStorage), ANALYTICS_CONTAINER, PARQUET_EXPORT_MEMORY_MB, PARQUET_EXPORT_PAGE_SIZE; the
 * `Values` of local.settings.json when present (the environment wins).
 */
import { mkdir } from 'node:fs/promises';
import * as path from 'node:path';

import { applyLocalSettings } from '../local/stack';
import { runAnalyticsExport } from '../shared/analytics/exportRuntime';
import type { SnapshotManifest, SnapshotPointer } from '../shared/analytics/snapshot';
import { POINTER_BLOB } from '../shared/analytics/snapshot';
import { loadAnalyticsSettings } from '../shared/config/analyticsSettings';
import { blobServiceClient } from '../shared/storage/blobStores';

export function parseExportArgs(args: string[]): { download?: string } {
  const o: { download?: string } = {};
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--download' && args[i + 1]) o.download = args[++i];
    else throw new Error(`unknown option ${args[i]} (options: --download <folder>)`);
  }
  return o;
}

export async function exportParquetMain(args: string[], env: Record<string, string | undefined> = process.env, out: (l: string) => void = (l) => process.stdout.write(`${l}\n`)): Promise<number> {
  const options = parseExportArgs(args);
  const settings = loadAnalyticsSettings(env);
  const started = performance.now();
  const r = await runAnalyticsExport(settings, { log: out });
  out(`${r.published ? 'published' : 'superseded by another run'}: snapshot ${r.snapshotId} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  out(`  ${r.documentsRead} documents read; rows: ${r.rows.instances} instances, ${r.rows.series} series, ${r.rows.studies} studies; ${r.files} files, ${r.bytes} bytes`);
  out(`  manifest: ${settings.container}/${r.manifest}`);
  if (options.download) {
    const container = blobServiceClient(settings.storage).getContainerClient(settings.container);
    const pointer = JSON.parse((await container.getBlobClient(POINTER_BLOB).downloadToBuffer()).toString('utf8')) as SnapshotPointer;
    const manifest = JSON.parse((await container.getBlobClient(pointer.manifest).downloadToBuffer()).toString('utf8')) as SnapshotManifest;
    const prefix = `snapshots/${manifest.snapshotId}/`;
    for (const t of Object.values(manifest.tables)) {
      for (const f of t.files) {
        const target = path.join(options.download, ...f.path.slice(prefix.length).split('/'));
        await mkdir(path.dirname(target), { recursive: true });
        await container.getBlobClient(f.path).downloadToFile(target);
      }
    }
    out(`  downloaded snapshot ${manifest.snapshotId} to ${options.download}`);
  }
  return r.published ? 0 : 3;
}

if (require.main === module) {
  applyLocalSettings(path.resolve(__dirname, '..', '..', 'local.settings.json'));
  exportParquetMain(process.argv.slice(2)).then((code) => process.exit(code), (e: Error) => {
    process.stderr.write(`export-parquet: ${e.message}\n`);
    process.exit(1);
  });
}
