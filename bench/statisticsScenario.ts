/**
 * Statistics on a generated catalog (issue 16): `instances` instance documents (with their
 * series and study documents) are loaded into the local Cosmos DB server, then in the same run
 *
 * - the statistics answer (GET /api/statistics's work: one read per matching series summary,
 *   aggregation, suppression) is timed, unfiltered and with a filter;
 * - the baseline, a full scan of the same catalog's instance documents aggregated in code (what
 *   a timer recompute, or an answer without the series shares, reads), is timed on the same
 *   server, interleaved;
 * - both answers are compared: the bench fails if they differ.
 */
import { Container, CosmosClient, type JSONObject } from '@azure/cosmos';

import { startCosmosServer } from '../local/services/cosmos';
import { ensureCatalog } from '../shared/catalog/cosmosCatalog';
import { CosmosResearchCatalogReader } from '../shared/catalog/cosmosResearchReader';
import type { InstanceDocument, ResearchDocument } from '../shared/catalog/documents';
import { QIDO_DEFAULT_LIMITS } from '../shared/catalog/qido';
import { loadSettings } from '../shared/config/settings';
import { aggregate, type RawStatistics, type SeriesRow, seriesStatistics, suppressSmallCells } from '../shared/statistics/aggregate';
import { catalogStatistics } from '../shared/statistics/catalogStatistics';
import { generateCatalog } from './catalogDocs';
import { percentile, round } from './stats';

export interface StatisticsScenarioOptions {
  instances: number;
  repeats: number;
  seed: number;
}

export interface StatisticsTiming {
  filter: string;
  /** Documents each side read. */
  seriesRead: number;
  instancesRead: number;
  answer: { p50Ms: number; maxMs: number };
  fullScan: { p50Ms: number; maxMs: number };
  /** fullScan p50 / answer p50. */
  speedup: number;
}

export interface StatisticsResult {
  instances: number;
  series: number;
  studies: number;
  loadSeconds: number;
  repeats: number;
  runs: StatisticsTiming[];
  note: string;
}

export async function load(container: Container, docs: Iterable<ResearchDocument>): Promise<{ series: number; studies: number }> {
  let batch: ResearchDocument[] = [];
  let series = 0;
  let studies = 0;
  const pending: Promise<unknown>[] = [];
  const flush = async () => {
    const ops = batch.map((d) => ({ operationType: 'Create' as const, resourceBody: d as unknown as JSONObject }));
    batch = [];
    pending.push(container.items.bulk(ops).then((r) => {
      const bad = r.find((x) => x.statusCode >= 300);
      if (bad) throw new Error(`bulk load: ${bad.statusCode}`);
    }));
    if (pending.length >= 4) await Promise.all(pending.splice(0));
  };
  for (const d of docs) {
    if (d.type === 'series') series++;
    if (d.type === 'study') studies++;
    batch.push(d);
    if (batch.length === 100) await flush();
  }
  if (batch.length) await flush();
  await Promise.all(pending);
  return { series, studies };
}

/** The baseline: every matching instance document read and aggregated here. */
export async function fullScan(container: Container, where: string, parameters: { name: string; value: string }[]): Promise<{ raw: RawStatistics; read: number }> {
  const iterator = container.items.query<InstanceDocument>({
    query: `SELECT c.studyInstanceUid, c.seriesInstanceUid, c.modality, c.sopClassUid, c.transferSyntaxUid, c.size, c.dicom FROM c WHERE c.type = 'instance'${where}`,
    parameters,
  }, { maxItemCount: 5000 });
  const bySeries = new Map<string, { first: InstanceDocument; rows: { sopClassUid: string; size: number; transferSyntaxUid: string }[] }>();
  let read = 0;
  while (iterator.hasMoreResults()) {
    for (const d of (await iterator.fetchNext()).resources ?? []) {
      read++;
      const entry = bySeries.get(d.seriesInstanceUid) ?? { first: d, rows: [] };
      entry.rows.push({ sopClassUid: d.sopClassUid, size: d.size, transferSyntaxUid: d.transferSyntaxUid });
      bySeries.set(d.seriesInstanceUid, entry);
    }
  }
  const rows: SeriesRow[] = [...bySeries.values()].map(({ first, rows: r }) => ({
    studyInstanceUid: first.studyInstanceUid,
    seriesInstanceUid: first.seriesInstanceUid,
    modality: first.modality,
    dicom: first.dicom,
    statistics: seriesStatistics(r),
  }));
  return { raw: aggregate(rows), read };
}

export function comparable(raw: RawStatistics): string {
  const answer = suppressSmallCells(raw, 1);
  for (const b of Object.values(answer.breakdowns)) b.cells.sort((x, y) => (x.value < y.value ? -1 : 1));
  return JSON.stringify(answer);
}

export async function runStatisticsScenario(options: StatisticsScenarioOptions, log: (line: string) => void): Promise<StatisticsResult> {
  const server = await startCosmosServer({ host: '127.0.0.1', port: 0 });
  try {
    const settings = loadSettings({ ...process.env, SourceStorage: 'UseDevelopmentStorage=true', CosmosDb: server.connectionString, DEID_KEY: 'x'.repeat(32) });
    // The local server scans the whole container for every page of every query (it has no
    // index), so one page over 100,000 documents can take longer than the SDK's 60 s default.
    const client = new CosmosClient({ endpoint: settings.cosmos.endpoint, key: settings.cosmos.kind === 'key' ? settings.cosmos.key : '', connectionPolicy: { enableEndpointDiscovery: false, requestTimeout: 900_000 } });
    const { research } = await ensureCatalog(settings, client);
    log(`statistics: loading ${options.instances} instance documents`);
    const loadStart = performance.now();
    const { series, studies } = await load(research, generateCatalog({ instances: options.instances, seed: options.seed }));
    const loadSeconds = round((performance.now() - loadStart) / 1000, 1);
    log(`statistics: loaded ${series} series of ${studies} studies in ${loadSeconds} s`);
    const reader = new CosmosResearchCatalogReader(research);
    const cases = [
      { filter: '', where: '', parameters: [] as { name: string; value: string }[] },
      { filter: 'Modality=CT&StudyDate=20180101-20221231', where: ' AND c.modality = @m AND c.dicom["00080020"]["Value"][0] >= @from AND c.dicom["00080020"]["Value"][0] <= @to', parameters: [{ name: '@m', value: 'CT' }, { name: '@from', value: '20180101' }, { name: '@to', value: '20221231' }] },
    ];
    const runs: StatisticsTiming[] = [];
    for (const c of cases) {
      const answerMs: number[] = [];
      const scanMs: number[] = [];
      let instancesRead = 0;
      let seriesRead = 0;
      for (let r = 0; r < options.repeats; r++) {
        let t = performance.now();
        let seen = 0;
        const counting = { query: <T>(...args: Parameters<CosmosResearchCatalogReader['query']>) => { const it = reader.query<T>(...args); return (async function* () { for await (const x of it) { seen++; yield x; } })(); } };
        const answer = await catalogStatistics(counting, new URLSearchParams(c.filter), QIDO_DEFAULT_LIMITS);
        suppressSmallCells(answer, 11);
        answerMs.push(performance.now() - t);
        seriesRead = seen;
        t = performance.now();
        const scan = await fullScan(research, c.where, c.parameters);
        scanMs.push(performance.now() - t);
        instancesRead = scan.read;
        if (comparable(answer) !== comparable(scan.raw)) throw new Error(`statistics (${c.filter || 'no filter'}) differ from the full scan`);
      }
      const p50a = percentile(answerMs, 50);
      const p50s = percentile(scanMs, 50);
      runs.push({
        filter: c.filter || '(none)',
        seriesRead,
        instancesRead,
        answer: { p50Ms: round(p50a, 1), maxMs: round(Math.max(...answerMs), 1) },
        fullScan: { p50Ms: round(p50s, 1), maxMs: round(Math.max(...scanMs), 1) },
        speedup: round(p50s / p50a, 1),
      });
      log(`statistics (${c.filter || 'no filter'}): answer p50 ${round(p50a, 0)} ms over ${seriesRead} series, full scan p50 ${round(p50s, 0)} ms over ${instancesRead} instances`);
    }
    return {
      instances: options.instances,
      series,
      studies,
      loadSeconds,
      repeats: options.repeats,
      runs,
      note: 'Same Cosmos DB server (local emulator, in memory), same process, interleaved; both answers compared equal in every run. The answer reads one summary per matching series; the full scan reads every matching instance document (projected) and aggregates in code.',
    };
  } finally {
    await server.stop();
  }
}
