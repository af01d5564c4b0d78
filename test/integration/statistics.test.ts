/**
 * GET /api/statistics through the running stack: after a burst of ingestions, duplicates,
 * deletes and re-ingestions, the statistics equal a brute-force count over the catalog's
 * instance documents; research callers get small cells withheld, operators the outcomes.
 */
import { Container } from '@azure/cosmos';

import { ctSliceBytes } from '../../bench/generate';
import { createCosmosClient } from '../../shared/catalog/cosmosCatalog';
import { CosmosResearchCatalogReader } from '../../shared/catalog/cosmosResearchReader';
import type { IngestionDocument, InstanceDocument } from '../../shared/catalog/documents';
import { QIDO_DEFAULT_LIMITS } from '../../shared/catalog/qido';
import { loadSettings } from '../../shared/config/settings';
import { type Breakdown, BREAKDOWNS, type Cell, type RawStatistics } from '../../shared/statistics/aggregate';
import { catalogStatistics, type StatisticsAnswerBody } from '../../shared/statistics/catalogStatistics';
import { sourceDriver } from './sourceDrivers';
import { apiGet, testStack } from './stackEnv';

const RUN = `stats-${process.pid}-${Date.now() % 1_000_000}`;
const SEED = 700_000 + (Date.now() % 100_000);
const CT_STUDIES = 14;
const MR_STUDIES = 3;

/** A generated CT slice, or the same slice declared MR (the Modality value swapped in place). */
function slice(study: number, instance: number): Buffer {
  const data = ctSliceBytes({ seed: SEED, study, instance });
  if (study < CT_STUDIES) return data;
  const modality = Buffer.from([0x08, 0x00, 0x60, 0x00, 0x43, 0x53, 0x02, 0x00, 0x43, 0x54]);
  const at = data.indexOf(modality);
  if (at < 0) throw new Error('generated slice without its Modality element');
  data.write('MR', at + 8, 'latin1');
  return data;
}

let index: Container;
let catalog: Container;
let minCell: number;

beforeAll(() => {
  const settings = loadSettings(testStack().env);
  minCell = settings.statisticsMinCell;
  const db = createCosmosClient(settings.cosmos).database(settings.cosmosDatabase);
  index = db.container(settings.indexContainer);
  catalog = db.container(settings.researchCatalogContainer);
});

/** The research studies that this run's sources produced (deleted ones too), from the restricted index. */
async function researchStudies(): Promise<string[]> {
  const { resources } = await index.items.query<IngestionDocument>({ query: 'SELECT * FROM c WHERE STARTSWITH(c.blobName, @p)', parameters: [{ name: '@p', value: `${RUN}/` }] }).fetchAll();
  return [...new Set(resources.flatMap((d) => (d.research ? [d.research.studyInstanceUid] : [])))].sort();
}

function text(doc: InstanceDocument, tag: string): string {
  const v = doc.dicom[tag]?.Value?.[0];
  return typeof v === 'string' || typeof v === 'number' ? String(v).trim() : '';
}

/** The brute-force answer: every instance document of the studies, counted here. */
async function bruteForce(studies: string[]): Promise<RawStatistics> {
  const { resources } = await catalog.items.query<InstanceDocument>({
    query: `SELECT * FROM c WHERE c.type = 'instance' AND c.studyInstanceUid IN (${studies.map((_, i) => `@s${i}`).join(', ')})`,
    parameters: studies.map((s, i) => ({ name: `@s${i}`, value: s })),
  }).fetchAll();
  const valueOf: Record<Breakdown, (d: InstanceDocument) => string> = {
    modality: (d) => d.modality,
    bodyPart: (d) => text(d, '00180015').toUpperCase(),
    sopClass: (d) => d.sopClassUid,
    manufacturerModel: (d) => (text(d, '00080070') === '' && text(d, '00081090') === '' ? '' : `${text(d, '00080070')} / ${text(d, '00081090')}`),
    year: (d) => text(d, '00080020').slice(0, 4),
    transferSyntax: (d) => d.transferSyntaxUid,
  };
  const count = (docs: InstanceDocument[]) => ({
    studies: new Set(docs.map((d) => d.studyInstanceUid)).size,
    series: new Set(docs.map((d) => d.seriesInstanceUid)).size,
    instances: docs.length,
    bytes: docs.reduce((n, d) => n + d.size, 0),
  });
  const breakdowns = {} as RawStatistics['breakdowns'];
  for (const b of BREAKDOWNS) {
    const groups = new Map<string, InstanceDocument[]>();
    for (const d of resources) groups.set(valueOf[b](d), [...(groups.get(valueOf[b](d)) ?? []), d]);
    breakdowns[b] = [...groups].map(([value, docs]) => ({ value, ...count(docs), studyUids: new Set(docs.map((d) => d.studyInstanceUid)) }));
  }
  return { totals: count(resources), breakdowns };
}

const plain = (c: Cell) => ({ value: c.value, studies: c.studies, series: c.series, instances: c.instances, bytes: c.bytes });
const byValue = (a: { value: string }, b: { value: string }) => (a.value < b.value ? -1 : a.value > b.value ? 1 : 0);

describe('statistics after a burst of ingestions, duplicates, deletes and re-ingestions', () => {
  let studies: string[];
  let filter: string;

  beforeAll(async () => {
    const driver = sourceDriver('blob');
    const names: string[] = [];
    const puts: Promise<void>[] = [];
    for (let s = 0; s < CT_STUDIES + MR_STUDIES; s++) {
      for (let i = 1; i <= 2; i++) {
        const name = `${RUN}/s${s}/${i}.dcm`;
        names.push(name);
        puts.push(driver.put(name, slice(s, i)));
      }
    }
    // Duplicates: the same bytes under other names, some twice.
    for (const [n, s] of [[0, 1], [1, 1], [2, 5]] as const) puts.push(driver.put(`${RUN}/dup/${n}.dcm`, slice(s, 1)));
    puts.push(driver.put(`${RUN}/dup/3.dcm`, slice(5, 1)));
    await Promise.all(puts);
    await driver.settle(120_000);
    // Re-ingestions (a source replaced by another instance), deletes (a whole study; a duplicate), a redelivered duplicate.
    await Promise.all([
      driver.put(`${RUN}/s3/2.dcm`, slice(3, 3)),
      driver.put(`${RUN}/s4/1.dcm`, slice(4, 4)),
      driver.remove(`${RUN}/s6/1.dcm`),
      driver.remove(`${RUN}/s6/2.dcm`),
      driver.remove(`${RUN}/dup/0.dcm`),
      driver.put(`${RUN}/dup/1.dcm`, slice(1, 1)),
    ]);
    await driver.settle(120_000);
    studies = await researchStudies();
    filter = `StudyInstanceUID=${studies.join(',')}`;
  });

  test('given the burst settled, then the unsuppressed statistics equal a brute-force count over the instance documents', async () => {
    expect(studies.length).toBe(CT_STUDIES + MR_STUDIES);
    const expected = await bruteForce(studies);
    // One study deleted whole, so one fewer than the sources' studies; re-ingested slices counted once.
    expect(expected.totals).toMatchObject({ studies: CT_STUDIES + MR_STUDIES - 1, instances: 2 * (CT_STUDIES + MR_STUDIES - 1) });
    const reader = new CosmosResearchCatalogReader(catalog);
    const raw = await catalogStatistics(reader, new URLSearchParams(filter), QIDO_DEFAULT_LIMITS);
    expect(raw.totals).toEqual(expected.totals);
    for (const b of BREAKDOWNS) expect(raw.breakdowns[b].map(plain).sort(byValue)).toEqual(expected.breakdowns[b].map(plain).sort(byValue));
  });

  test('given a research token, then GET /api/statistics shows the totals, no cell under the minimum and no ingestion outcomes', async () => {
    const res = await apiGet(`/api/statistics?${filter}`, 'research');
    expect(res.status).toBe(200);
    const body = (await res.json()) as StatisticsAnswerBody;
    const expected = await bruteForce(studies);
    expect(body.minCellSize).toBe(minCell);
    expect(body.yearOf).toBe('shifted StudyDate');
    expect(body.ingestions).toBeUndefined();
    expect(body.totals).toEqual(expected.totals);
    for (const b of BREAKDOWNS) {
      const truth = new Map(expected.breakdowns[b].map((c) => [c.value, c]));
      for (const c of body.breakdowns[b].cells) {
        expect(c.studies).toBeGreaterThanOrEqual(minCell);
        expect(plain(c)).toEqual(plain(truth.get(c.value) as Cell));
      }
      expect(body.breakdowns[b].cells.length + body.breakdowns[b].suppressedCells).toBe(truth.size);
    }
    // Three MR studies: under the minimum, so the MR cell is not shown.
    expect(body.breakdowns.modality.cells.map((c) => c.value)).not.toContain('MR');
  });

  test('given a filter matching fewer studies than the minimum, then neither totals nor cells are shown', async () => {
    const res = await apiGet(`/api/statistics?StudyInstanceUID=${studies.slice(0, 2).join(',')}`, 'research');
    const body = (await res.json()) as StatisticsAnswerBody;
    expect(res.status).toBe(200);
    expect(body.totals).toBeUndefined();
    for (const b of BREAKDOWNS) expect(body.breakdowns[b].cells).toEqual([]);
  });

  test('given an operations token, then the ingestion outcomes by status and error code, and no research counts', async () => {
    const res = await apiGet('/api/statistics', 'operations');
    expect(res.status).toBe(200);
    const body = (await res.json()) as StatisticsAnswerBody;
    expect(body.totals).toBeUndefined();
    expect(body.breakdowns).toBeUndefined();
    // This run deleted three sources; other test files share the stack, so at least those.
    expect(body.ingestions?.byStatus.deleted).toBeGreaterThanOrEqual(3);
    expect(body.ingestions?.byStatus.cataloged).toBeGreaterThanOrEqual(2 * (CT_STUDIES + MR_STUDIES - 1));
    for (const e of body.ingestions?.byError ?? []) expect(e.files).toBeGreaterThan(0);
  });

  test('given a sharing token, then 403; given a bad filter, then 400 naming it', async () => {
    expect((await apiGet('/api/statistics', 'sharing')).status).toBe(403);
    const bad = await apiGet('/api/statistics?NoSuchKeyword=1', 'research');
    expect(bad.status).toBe(400);
    expect(JSON.stringify(await bad.json())).toContain('NoSuchKeyword');
    const paging = await apiGet('/api/statistics?limit=10', 'research');
    expect(paging.status).toBe(400);
    expect(JSON.stringify(await paging.json())).toContain('limit');
  });
});
