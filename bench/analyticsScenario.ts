/**
 * The issue 16 acceptance figures on one generated catalog (BENCH_ANALYTICS_INSTANCES, default
 * 100,000 instance documents, with their series and study documents), in one run:
 *
 * (a) the statistics answer (GET /api/statistics's work) against a full scan of the same
 *     instance documents aggregated in code, interleaved, compared equal;
 * (b) the Parquet export (shared/analytics: read feed, DuckDB, Azurite): time, files, bytes,
 *     the peak RSS of this process during the run, and the snapshot's row counts against the catalog.
 *
 * The local Cosmos DB server runs with its scans compiled in O(n) per page
 * (local/services/cosmosLinearScan.ts): as shipped, its query engine copies the result array once
 * per document, O(n²) per page, and one read-feed page over 20,000 documents took minutes.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';

import { CosmosClient } from '@azure/cosmos';
import { BlobServiceClient } from '@azure/storage-blob';

import { azuriteConnectionString } from '../local/emulators';
import { startAzurite } from '../local/services/azurite';
import { startCosmosServer } from '../local/services/cosmos';
import { BlobAnalyticsStore, CosmosCatalogFeed } from '../shared/analytics/azureAnalyticsStore';
import { DuckDbColumnarWriter } from '../shared/analytics/duckdbWriter';
import { exportCatalogSnapshot } from '../shared/analytics/snapshot';
import { ensureCatalog } from '../shared/catalog/cosmosCatalog';
import { CosmosResearchCatalogReader } from '../shared/catalog/cosmosResearchReader';
import { QIDO_DEFAULT_LIMITS } from '../shared/catalog/qido';
import { loadSettings } from '../shared/config/settings';
import { suppressSmallCells } from '../shared/statistics/aggregate';
import { catalogStatistics } from '../shared/statistics/catalogStatistics';
import { generateCatalog } from './catalogDocs';
import { comparable, fullScan, load } from './statisticsScenario';
import { percentile, round } from './stats';

export interface AnalyticsScenarioOptions {
  instances: number;
  repeats: number;
  seed: number;
  /** Read-feed page size of the export. */
  pageSize: number;
}

export async function runAnalyticsScenario(options: AnalyticsScenarioOptions, log: (line: string) => void) {
  const stops: (() => Promise<void>)[] = [];
  const work = await mkdtemp(path.join(os.tmpdir(), 'bench-analytics-'));
  try {
    const cosmosServer = await startCosmosServer({ host: '127.0.0.1', port: 0, linearScans: true });
    stops.push(() => cosmosServer.stop());
    const azurite = await startAzurite({ host: '127.0.0.1', blobPort: 0, queuePort: 0 });
    stops.push(() => azurite.stop());
    const settings = loadSettings({ ...process.env, SourceStorage: 'UseDevelopmentStorage=true', CosmosDb: cosmosServer.connectionString, DEID_KEY: 'x'.repeat(32) });
    const client = new CosmosClient({ endpoint: cosmosServer.endpoint, key: settings.cosmos.kind === 'key' ? settings.cosmos.key : '', connectionPolicy: { enableEndpointDiscovery: false, requestTimeout: 900_000 } });
    const { research } = await ensureCatalog(settings, client);
    log(`analytics: loading ${options.instances} instance documents`);
    let t = performance.now();
    const { series, studies } = await load(research, generateCatalog({ instances: options.instances, seed: options.seed }));
    const loadSeconds = round((performance.now() - t) / 1000, 1);
    log(`analytics: loaded ${series} series of ${studies} studies in ${loadSeconds} s`);

    // (a) statistics answer against the full scan, interleaved.
    const reader = new CosmosResearchCatalogReader(research);
    const answerMs: number[] = [];
    const scanMs: number[] = [];
    let seriesRead = 0;
    let instancesRead = 0;
    for (let r = 0; r < options.repeats; r++) {
      t = performance.now();
      let seen = 0;
      const counting = { query: <T>(...args: Parameters<CosmosResearchCatalogReader['query']>) => { const it = reader.query<T>(...args); return (async function* () { for await (const x of it) { seen++; yield x; } })(); } };
      const answer = await catalogStatistics(counting, new URLSearchParams(), QIDO_DEFAULT_LIMITS);
      suppressSmallCells(answer, 11);
      answerMs.push(performance.now() - t);
      seriesRead = seen;
      t = performance.now();
      const scan = await fullScan(research, '', []);
      scanMs.push(performance.now() - t);
      instancesRead = scan.read;
      if (comparable(answer) !== comparable(scan.raw)) throw new Error('statistics differ from the full scan');
      log(`analytics: statistics run ${r + 1}: answer ${round(answerMs[r] ?? 0, 0)} ms, full scan ${round(scanMs[r] ?? 0, 0)} ms`);
    }

    // (b) the Parquet export.
    const blobs = BlobServiceClient.fromConnectionString(azuriteConnectionString(azurite.blobPort, azurite.queuePort));
    const store = new BlobAnalyticsStore(blobs.getContainerClient('analytics'));
    await store.ensure();
    let peakRss = process.memoryUsage().rss;
    const rssBefore = peakRss;
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 100);
    t = performance.now();
    let exported;
    try {
      exported = await exportCatalogSnapshot({
        feed: new CosmosCatalogFeed(research),
        store,
        openWriter: () => DuckDbColumnarWriter.open({ memoryLimitMb: 256, tempDir: work }),
      }, { pageSize: options.pageSize });
    } finally {
      clearInterval(sampler);
    }
    const exportSeconds = round((performance.now() - t) / 1000, 1);
    if (exported.rows.instances !== options.instances || exported.rows.series !== series || exported.rows.studies !== studies) {
      throw new Error(`export rows ${JSON.stringify(exported.rows)} differ from the catalog (${options.instances}/${series}/${studies})`);
    }
    // What the same catalog weighs as JSON documents, for scale.
    let jsonBytes = 0;
    for (const d of generateCatalog({ instances: options.instances, seed: options.seed })) jsonBytes += Buffer.byteLength(JSON.stringify(d));
    log(`analytics: export ${exportSeconds} s, ${exported.files} files, ${exported.bytes} bytes (catalog JSON ${jsonBytes} bytes), peak RSS ${Math.round(peakRss / 1048576)} MB`);
    return {
      instances: options.instances,
      series,
      studies,
      loadSeconds,
      statistics: {
        repeats: options.repeats,
        seriesRead,
        instancesRead,
        answer: { p50Ms: round(percentile(answerMs, 50), 1), maxMs: round(Math.max(...answerMs), 1) },
        fullScan: { p50Ms: round(percentile(scanMs, 50), 1), maxMs: round(Math.max(...scanMs), 1) },
        speedup: round(percentile(scanMs, 50) / percentile(answerMs, 50), 1),
      },
      parquetExport: {
        seconds: exportSeconds,
        pageSize: options.pageSize,
        documentsRead: exported.documentsRead,
        rows: exported.rows,
        files: exported.files,
        bytes: exported.bytes,
        catalogJsonBytes: jsonBytes,
        rssBeforeMB: Math.round(rssBefore / 1048576),
        peakRssMB: Math.round(peakRss / 1048576),
        duckdbMemoryLimitMB: 256,
      },
      note: 'One run, one catalog: the local Cosmos DB server (child process, in memory, scans compiled O(n) per page: local/services/cosmosLinearScan.ts) and Azurite. Statistics: the answer (one summary per series) and the full scan (every instance document, projected) interleaved and compared equal. Export: read feed -> DuckDB staging file (256 MB buffer pool, spills to disk) -> hive-partitioned Parquet (zstd) -> Azurite, manifest, conditional publish; rows checked against the catalog.',
    };
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    await rm(work, { recursive: true, force: true });
  }
}
