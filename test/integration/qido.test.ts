/**
 * QIDO-RS against a real Cosmos DB emulator server (@vercel/cosmosdb-server), started here
 * over plain HTTP on a free port: the SQL that the handlers build runs through the real SDK
 * (query plans, cross-partition ORDER BY, continuation paging).
 */
import { type Container, CosmosClient } from '@azure/cosmos';
import { HttpRequest, type HttpResponseInit, InvocationContext } from '@azure/functions';
import { createHttpServer } from '@vercel/cosmosdb-server';
import type { AddressInfo } from 'net';

import { COSMOS_EMULATOR_KEY } from '../../local/emulators';
import { CosmosResearchCatalogReader } from '../../shared/catalog/cosmosResearchReader';
import type { InstanceDocument, ResearchDocument, SeriesDocument, StudyDocument } from '../../shared/catalog/documents';
import { createQidoHandler, QIDO_DEFAULT_LIMITS, type QidoLevel } from '../../shared/catalog/qido';
import type { ResearchCatalogReader } from '../../shared/catalog/researchCatalog';
import type { DicomJson, DicomJsonAttribute } from '../../shared/dicom/json';

const ROOT = '2.25.1000';
const UPDATED = '2024-01-01T00:00:00.000Z';

interface SeriesSpec { modality: string; number: number; description: string; instances: number }
interface StudySpec {
  n: number;
  patientId: string;
  patientName: string;
  studyDate: string;
  studyTime: string;
  description: string;
  series: SeriesSpec[];
}

const studyUid = (n: number) => `${ROOT}.${n}`;
const seriesUid = (n: number, s: number) => `${ROOT}.${n}.${s}`;
const instanceUid = (n: number, s: number, i: number) => `${ROOT}.${n}.${s}.${i}`;
const CT_IMAGE = '1.2.840.10008.5.1.4.1.1.2';
const MR_IMAGE = '1.2.840.10008.5.1.4.1.1.4';

function documentsOf(spec: StudySpec): ResearchDocument[] {
  const modalities = [...new Set(spec.series.map((s) => s.modality))].sort();
  const studyDicom: DicomJson = {
    '00080005': { vr: 'CS', Value: ['ISO_IR 192'] },
    '00080020': { vr: 'DA', Value: [spec.studyDate] },
    '00080030': { vr: 'TM', Value: [spec.studyTime] },
    '00080050': { vr: 'SH', Value: [`ACC${spec.n}`] },
    '00081030': { vr: 'LO', Value: [spec.description] },
    '00100010': { vr: 'PN', Value: [{ Alphabetic: spec.patientName }] },
    '00100020': { vr: 'LO', Value: [spec.patientId] },
    '00100040': { vr: 'CS', Value: ['O'] },
    '0020000D': { vr: 'UI', Value: [studyUid(spec.n)] },
    '00200010': { vr: 'SH', Value: [`S${spec.n}`] },
  };
  const base = { studyInstanceUid: studyUid(spec.n), updatedAt: UPDATED };
  const docs: ResearchDocument[] = [];
  const study: StudyDocument = {
    ...base,
    id: `study:${studyUid(spec.n)}`,
    type: 'study',
    dicom: { ...studyDicom, '00080061': { vr: 'CS', Value: modalities } },
    modalitiesInStudy: modalities,
    sopClassesInStudy: [],
    numberOfStudyRelatedSeries: spec.series.length,
    numberOfStudyRelatedInstances: spec.series.reduce((sum, s) => sum + s.instances, 0),
  };
  docs.push(study);
  spec.series.forEach((s, si) => {
    const seUid = seriesUid(spec.n, si + 1);
    const seriesDicom: DicomJson = {
      ...studyDicom,
      '00080060': { vr: 'CS', Value: [s.modality] },
      '0008103E': { vr: 'LO', Value: [s.description] },
      '0020000E': { vr: 'UI', Value: [seUid] },
      '00200011': { vr: 'IS', Value: [s.number] },
    };
    const series: SeriesDocument = {
      ...base, id: `series:${seUid}`, type: 'series', dicom: seriesDicom, seriesInstanceUid: seUid, modality: s.modality,
      numberOfSeriesRelatedInstances: s.instances,
      sopClassesInSeries: [s.modality === 'MR' ? MR_IMAGE : CT_IMAGE],
    };
    docs.push(series);
    for (let i = 1; i <= s.instances; i++) {
      const sopUid = instanceUid(spec.n, si + 1, i);
      const sopClass = s.modality === 'MR' ? MR_IMAGE : CT_IMAGE;
      const instance: InstanceDocument = {
        ...base,
        id: `instance:${sopUid}`,
        type: 'instance',
        dicom: {
          ...seriesDicom,
          '00080016': { vr: 'UI', Value: [sopClass] },
          '00080018': { vr: 'UI', Value: [sopUid] },
          '00200013': { vr: 'IS', Value: [i] },
          '00280010': { vr: 'US', Value: [512] },
          '00280011': { vr: 'US', Value: [512] },
          '00280100': { vr: 'US', Value: [16] },
        },
        seriesInstanceUid: seUid,
        sopInstanceUid: sopUid,
        sopClassUid: sopClass,
        modality: s.modality,
        transferSyntaxUid: '1.2.840.10008.1.2.1',
        size: 1024,
        researchBlob: `${studyUid(spec.n)}/${seUid}/${sopUid}.dcm`,
        sourceRank: 'rank-hash',
        sourceKey: 'source-key-hash',
        deidentification: { profile: 'basic', profileVersion: '1', keyId: 'k1' },
      };
      docs.push(instance);
    }
  });
  return docs;
}

const ct = (number: number, instances: number): SeriesSpec => ({ modality: 'CT', number, description: 'AXIAL', instances });
const STUDIES: StudySpec[] = [
  { n: 1, patientId: 'RID0001', patientName: 'ANON^ALPHA', studyDate: '20200115', studyTime: '101500', description: 'CHEST', series: [ct(1, 2), ct(2, 2)] },
  {
    n: 2, patientId: 'RID0002', patientName: 'ANON^BETA', studyDate: '20201130', studyTime: '083000', description: 'HEAD',
    series: [{ modality: 'MR', number: 1, description: 'T1', instances: 3 }, ct(2, 1)],
  },
  {
    n: 3, patientId: 'RID0103', patientName: 'Anon^Gamma', studyDate: '20210301', studyTime: '140000', description: 'ABDOMEN',
    series: [{ modality: 'US', number: 1, description: 'LIVER', instances: 1 }],
  },
  // Fillers for paging: many studies in many partitions.
  ...Array.from({ length: 14 }, (_, k): StudySpec => ({
    n: 10 + k, patientId: `RID2${String(k).padStart(3, '0')}`, patientName: `ANON^FILL${k}`, studyDate: `201901${String(k + 10)}`,
    studyTime: '120000', description: 'FILLER', series: [ct(1, 1)],
  })),
];

let server: ReturnType<typeof createHttpServer>;
let client: CosmosClient;
let container: Container;
let reader: ResearchCatalogReader;

beforeAll(async () => {
  server = createHttpServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  client = new CosmosClient({
    endpoint: `http://127.0.0.1:${port}/`,
    key: COSMOS_EMULATOR_KEY,
    // The server advertises https locations; over plain HTTP discovery must stay off.
    connectionPolicy: { enableEndpointDiscovery: false },
  });
  const { database } = await client.databases.createIfNotExists({ id: 'qido-test' });
  ({ container } = await database.containers.createIfNotExists({ id: 'research-catalog', partitionKey: { paths: ['/studyInstanceUid'] } }));
  for (const spec of STUDIES) {
    for (const doc of documentsOf(spec)) await container.items.create(doc);
  }
  reader = new CosmosResearchCatalogReader(container);
});

afterAll(async () => {
  client?.dispose();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
});

const ROUTES: Record<QidoLevel, string> = { study: 'studies', series: 'series', instance: 'instances' };

async function qido(level: QidoLevel, query: string, params: { study?: string; series?: string } = {}): Promise<HttpResponseInit> {
  const path = params.series
    ? `studies/${params.study}/series/${params.series}/instances`
    : params.study ? `studies/${params.study}/${ROUTES[level]}` : ROUTES[level];
  const handler = createQidoHandler(async () => reader, level, { limits: () => QIDO_DEFAULT_LIMITS });
  const request = new HttpRequest({
    method: 'GET',
    url: `http://127.0.0.1:7071/api/dicomweb/${path}${query ? `?${query}` : ''}`,
    params: params as Record<string, string>,
  });
  return handler(request, new InvocationContext({ functionName: 'qido', logHandler: () => undefined }));
}

async function ok(level: QidoLevel, query: string, params: { study?: string; series?: string } = {}): Promise<DicomJson[]> {
  const res = await qido(level, query, params);
  expect(res.status).toBe(200);
  expect((res.headers as Record<string, string>)['content-type']).toBe('application/dicom+json');
  return res.jsonBody as DicomJson[];
}

const value = (ds: DicomJson | undefined, tag: string): unknown => (ds?.[tag] as DicomJsonAttribute | undefined)?.Value?.[0];
const values = (ds: DicomJson | undefined, tag: string): unknown[] | undefined => (ds?.[tag] as DicomJsonAttribute | undefined)?.Value;
const studyUidsOf = (result: DicomJson[]) => result.map((ds) => value(ds, '0020000D'));

describe('QIDO-RS search for studies', () => {
  test('given PatientID by keyword, then the one study with its default attributes, sorted by tag', async () => {
    const result = await ok('study', 'PatientID=RID0001');
    expect(result).toHaveLength(1);
    const study = result[0] as DicomJson;
    expect(value(study, '0020000D')).toBe(studyUid(1));
    expect(value(study, '00100020')).toBe('RID0001');
    expect(value(study, '00100010')).toEqual({ Alphabetic: 'ANON^ALPHA' });
    expect(value(study, '00080020')).toBe('20200115');
    expect(values(study, '00080061')).toEqual(['CT']);
    expect(study['00201206']).toEqual({ vr: 'IS', Value: [2] });
    expect(study['00201208']).toEqual({ vr: 'IS', Value: [4] });
    // Required but unknown: returned empty, as C-FIND returns required keys.
    expect(study['00100030']).toEqual({ vr: 'DA' });
    expect(Object.keys(study)).toEqual([...Object.keys(study)].sort());
    // Not a default, not asked for.
    expect(study['00081030']).toBeUndefined();
    expect(JSON.stringify(result)).not.toMatch(/sourceKey|researchBlob|source-key-hash|copy-hash/);
  });

  test('given the same key by tag, then the same answer', async () => {
    expect(await ok('study', '00100020=RID0001')).toEqual(await ok('study', 'PatientID=RID0001'));
  });

  test('given ModalitiesInStudy, then the studies with a series of that modality', async () => {
    expect(studyUidsOf(await ok('study', 'ModalitiesInStudy=MR'))).toEqual([studyUid(2)]);
    expect(studyUidsOf(await ok('study', '00080061=US,MR')).sort()).toEqual([studyUid(2), studyUid(3)]);
  });

  test('given a StudyDate range, closed or open, then the studies inside it', async () => {
    expect(studyUidsOf(await ok('study', 'StudyDate=20200101-20201231')).sort()).toEqual([studyUid(1), studyUid(2)]);
    expect(studyUidsOf(await ok('study', 'StudyDate=20210101-'))).toEqual([studyUid(3)]);
    expect(studyUidsOf(await ok('study', 'StudyDate=-20190111'))).toEqual([studyUid(10), studyUid(11)]);
    expect(studyUidsOf(await ok('study', 'StudyDate=20200115'))).toEqual([studyUid(1)]);
    expect(studyUidsOf(await ok('study', 'StudyDate=20200115&StudyTime=1000-1030'))).toEqual([studyUid(1)]);
  });

  test('given wild cards, then prefix, single-character and case-insensitive person name matches', async () => {
    expect(studyUidsOf(await ok('study', 'PatientID=RID01*'))).toEqual([studyUid(3)]);
    expect(studyUidsOf(await ok('study', 'PatientID=RID000?'))).toEqual([studyUid(1), studyUid(2)].sort());
    expect(studyUidsOf(await ok('study', 'PatientName=anon^b*'))).toEqual([studyUid(2)]);
    expect(studyUidsOf(await ok('study', 'PatientName=ANON^GAMMA'))).toEqual([studyUid(3)]);
    expect(studyUidsOf(await ok('study', 'StudyDescription=*DOM*'))).toEqual([studyUid(3)]);
  });

  test('given a UID list, then exactly those studies', async () => {
    expect(studyUidsOf(await ok('study', `StudyInstanceUID=${studyUid(1)},${studyUid(3)},${ROOT}.999`)).sort()).toEqual([studyUid(1), studyUid(3)]);
  });

  test('given limit and offset, then pages without duplicates or gaps, in a stable order', async () => {
    const all = studyUidsOf(await ok('study', 'limit=1000'));
    expect(all).toHaveLength(STUDIES.length);
    const paged: unknown[] = [];
    for (let offset = 0; offset < all.length + 4; offset += 4) {
      const page = studyUidsOf(await ok('study', `limit=4&offset=${offset}`));
      expect(page.length).toBeLessThanOrEqual(4);
      paged.push(...page);
    }
    expect(paged).toEqual(all);
    expect(new Set(paged).size).toBe(all.length);
    // Paging also holds when the post-filter decides (person names).
    const filtered = studyUidsOf(await ok('study', 'PatientName=anon^fill*&limit=1000'));
    expect(filtered).toHaveLength(14);
    const filteredPages = [
      ...studyUidsOf(await ok('study', 'PatientName=anon^fill*&limit=5')),
      ...studyUidsOf(await ok('study', 'PatientName=anon^fill*&limit=5&offset=5')),
      ...studyUidsOf(await ok('study', 'PatientName=anon^fill*&limit=5&offset=10')),
    ];
    expect(filteredPages).toEqual(filtered);
  });

  test('given no match, then 200 with an empty array', async () => {
    expect(await ok('study', 'PatientID=NOBODY')).toEqual([]);
  });

  test('given includefield, then those attributes too; given all, then everything the catalog holds', async () => {
    const [withDescription] = await ok('study', 'PatientID=RID0002&includefield=StudyDescription,00080005');
    expect(value(withDescription, '00081030')).toBe('HEAD');
    const [everything] = await ok('study', 'PatientID=RID0002&includefield=all');
    expect(value(everything, '00081030')).toBe('HEAD');
    expect(value(everything, '00100040')).toBe('O');
    expect(values(everything, '00080061')).toEqual(['CT', 'MR']);
  });

  test('given fuzzymatching=true, then literal matching and a 299 warning', async () => {
    const res = await qido('study', 'PatientID=RID0001&fuzzymatching=true');
    expect(res.status).toBe(200);
    expect((res.headers as Record<string, string>)['warning']).toMatch(/^299 .*fuzzymatching/);
  });
});

describe('CosmosResearchCatalogReader', () => {
  test('given a page size smaller than the answer, then every document once, across continuation pages', async () => {
    const ids: string[] = [];
    const spec = { query: 'SELECT c.id FROM c WHERE c.type = @t ORDER BY c.id', parameters: [{ name: '@t', value: 'study' }] };
    for await (const doc of reader.query<{ id: string }>(spec, { pageSize: 2 })) ids.push(doc.id);
    expect(ids).toHaveLength(STUDIES.length);
    expect(ids).toEqual([...ids].sort());
  });

  test('given a partition key, then only that study is read', async () => {
    const spec = { query: 'SELECT c.id FROM c WHERE c.studyInstanceUid = @s', parameters: [{ name: '@s', value: studyUid(2) }] };
    const ids: string[] = [];
    for await (const doc of reader.query<{ id: string }>(spec, { partitionKey: studyUid(2), pageSize: 3 })) ids.push(doc.id);
    expect(ids).toHaveLength(1 + 2 + 4);
  });

  test('given a query the service rejects as malformed, then a PipelineError that is not retried (our bug, a 500)', async () => {
    const iterate = async () => {
      for await (const _ of reader.query({ query: 'SELECT * FROM c GROUP BY c.type', parameters: [] })) void _;
    };
    await expect(iterate()).rejects.toMatchObject({ name: 'PipelineError', code: 'INTERNAL', transient: false });
  });
});

describe('QIDO-RS search for series and instances', () => {
  test('given a study, then its series with their own attributes', async () => {
    const series = await ok('series', '', { study: studyUid(2) });
    expect(series.map((s) => value(s, '0020000E'))).toEqual([seriesUid(2, 1), seriesUid(2, 2)]);
    const mr = series[0];
    expect(value(mr, '00080060')).toBe('MR');
    expect(value(mr, '00200011')).toBe(1);
    expect(mr?.['00201209']).toEqual({ vr: 'IS', Value: [3] });
    expect(value(mr, '0020000D')).toBe(studyUid(2));
    // Study attributes are not defaults within a study.
    expect(mr?.['00100020']).toBeUndefined();
    expect(studyUidsOf(await ok('series', 'Modality=CT', { study: studyUid(2) }))).toEqual([studyUid(2)]);
  });

  test('given all series and a study summary key, then the series of the matching studies with study attributes', async () => {
    const series = await ok('series', 'ModalitiesInStudy=MR');
    expect(series.map((s) => value(s, '0020000E'))).toEqual([seriesUid(2, 1), seriesUid(2, 2)]);
    expect(value(series[1], '00100020')).toBe('RID0002');
    expect(values(series[1], '00080061')).toEqual(['CT', 'MR']);
    expect(series[1]?.['00201208']).toEqual({ vr: 'IS', Value: [4] });
    const mrSeries = await ok('series', 'Modality=MR&StudyDate=20200101-');
    expect(mrSeries.map((s) => value(s, '0020000E'))).toEqual([seriesUid(2, 1)]);
  });

  test('given a series, then its instances with their image attributes', async () => {
    const instances = await ok('instance', '', { study: studyUid(2), series: seriesUid(2, 1) });
    expect(instances.map((i) => value(i, '00080018'))).toEqual([1, 2, 3].map((i) => instanceUid(2, 1, i)));
    const first = instances[0];
    expect(value(first, '00080016')).toBe(MR_IMAGE);
    expect(value(first, '00280010')).toBe(512);
    expect(value(first, '00280100')).toBe(16);
    expect(value(first, '0020000E')).toBe(seriesUid(2, 1));
    const numbered = await ok('instance', 'InstanceNumber=2', { study: studyUid(2), series: seriesUid(2, 1) });
    expect(numbered.map((i) => value(i, '00080018'))).toEqual([instanceUid(2, 1, 2)]);
  });

  test('given a study and no series, then every instance of the study with series attributes', async () => {
    const instances = await ok('instance', 'Modality=CT', { study: studyUid(2) });
    expect(instances.map((i) => value(i, '00080018'))).toEqual([instanceUid(2, 2, 1)]);
    expect(instances[0]?.['00201209']).toEqual({ vr: 'IS', Value: [1] });
    expect(await ok('instance', '', { study: studyUid(2) })).toHaveLength(4);
  });

  test('given all instances with study, series and instance keys, then only those that match all', async () => {
    const instances = await ok('instance', `PatientID=RID0002&Modality=MR&SOPInstanceUID=${instanceUid(2, 1, 1)},${instanceUid(2, 1, 3)}`);
    expect(instances.map((i) => value(i, '00080018'))).toEqual([instanceUid(2, 1, 1), instanceUid(2, 1, 3)]);
    expect(value(instances[0], '00100020')).toBe('RID0002');
    expect(instances[0]?.['00201208']).toEqual({ vr: 'IS', Value: [4] });
  });
});

describe('QIDO-RS bad requests', () => {
  test.each([
    ['study', 'PatientNme=X', /PatientNme is not a DICOM attribute keyword or tag/],
    ['study', 'Modality=CT', /Modality is a series-level attribute/],
    ['study', 'StudyDate=20201301-20201231', /StudyDate has a date that does not exist/],
    ['study', 'StudyDate=20201231-20200101', /StudyDate has a range whose start is after its end/],
    ['study', 'limit=abc', /limit must be a non-negative integer/],
    ['study', 'offset=-1', /offset must be a non-negative integer/],
    ['instance', 'SOPInstanceUID=1.2.*', /SOPInstanceUID is a UID: wild cards are not allowed/],
    ['series', 'RequestAttributeSequence.ScheduledProcedureStepID=1', /Sequence matching is not supported/],
  ] as const)('given %s?%s, then 400 QUERY_INVALID', async (level, query, message) => {
    const res = await qido(level, query);
    expect(res.status).toBe(400);
    const body = res.jsonBody as { error: { code: string; message: string } };
    expect(body.error.code).toBe('QUERY_INVALID');
    expect(body.error.message).toMatch(message);
  });
});
