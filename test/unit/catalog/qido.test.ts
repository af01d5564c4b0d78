import { HttpRequest, type HttpResponseInit, InvocationContext } from '@azure/functions';

import {
  buildCatalogQuery,
  buildStudyPassQuery,
  createQidoHandler,
  dicomwebRootOf,
  parseQidoRequest,
  QIDO_DEFAULT_LIMITS,
  type QidoDocument,
  type QidoLevel,
  type QidoQuery,
  runQido,
} from '../../../shared/catalog/qido';
import type { ResearchCatalogReader, SqlQuery } from '../../../shared/catalog/researchCatalog';
import type { DicomJson } from '../../../shared/dicom/json';
import { ErrorCodes, PipelineError } from '../../../shared/errors';

const parse = (level: QidoLevel, query: string, path: { study?: string; series?: string } = {}) =>
  parseQidoRequest(level, new URLSearchParams(query), path);

function parseError(level: QidoLevel, query: string, path: { study?: string; series?: string } = {}): PipelineError {
  try {
    parse(level, query, path);
  } catch (e) {
    if (e instanceof PipelineError) return e;
    throw e;
  }
  throw new Error(`expected ${query} to be rejected`);
}

describe('parseQidoRequest', () => {
  test('given a keyword or its tag, then the same match key', () => {
    const byKeyword = parse('study', 'PatientID=RID1');
    const byTag = parse('study', '00100020=RID1');
    expect(byKeyword.keys).toEqual(byTag.keys);
    expect(byKeyword.keys).toEqual([{ tag: '00100020', keyword: 'PatientID', vr: 'LO', level: 'study', matchers: [{ kind: 'single', value: 'RID1' }] }]);
  });

  test('given no parameters, then limit 100, offset 0, no keys and no warnings', () => {
    expect(parse('study', '')).toEqual({ level: 'study', keys: [], includeFields: [], limit: 100, offset: 0, warnings: [] });
  });

  test('given a repeated key, then its values are alternatives of one key', () => {
    const q = parse('study', 'ModalitiesInStudy=CT&00080061=MR');
    expect(q.keys).toHaveLength(1);
    expect(q.keys[0]?.matchers).toEqual([{ kind: 'single', value: 'CT' }, { kind: 'single', value: 'MR' }]);
  });

  test('given a comma in a code string, then a list; in free text, then a literal comma', () => {
    expect(parse('study', 'ModalitiesInStudy=CT,MR').keys[0]?.matchers).toEqual([{ kind: 'single', value: 'CT' }, { kind: 'single', value: 'MR' }]);
    expect(parse('study', 'StudyDescription=CT HEAD, NO CONTRAST').keys[0]?.matchers).toEqual([{ kind: 'single', value: 'CT HEAD, NO CONTRAST' }]);
  });

  test('given UIDs, then single value or UID list matching', () => {
    expect(parse('study', 'StudyInstanceUID=1.2.3').keys[0]?.matchers).toEqual([{ kind: 'single', value: '1.2.3' }]);
    expect(parse('study', 'StudyInstanceUID=1.2.3,1.2.4').keys[0]?.matchers).toEqual([{ kind: 'uidList', uids: ['1.2.3', '1.2.4'] }]);
  });

  test('given * or ? in text, then wild card matching; given only * or nothing, then universal matching', () => {
    expect(parse('study', 'PatientName=DOE^J*').keys[0]?.matchers).toEqual([{ kind: 'wildcard', pattern: 'DOE^J*' }]);
    expect(parse('study', 'AccessionNumber=A?1').keys[0]?.matchers).toEqual([{ kind: 'wildcard', pattern: 'A?1' }]);
    expect(parse('study', 'PatientID=*').keys[0]?.matchers).toEqual([{ kind: 'universal' }]);
    expect(parse('study', 'PatientID=').keys[0]?.matchers).toEqual([{ kind: 'universal' }]);
    expect(parse('study', 'StudyDate=*').keys[0]?.matchers).toEqual([{ kind: 'universal' }]);
  });

  test('given date ranges, closed or open at either end, then range matching', () => {
    expect(parse('study', 'StudyDate=20200101-20201231').keys[0]?.matchers).toEqual([{ kind: 'range', from: '20200101', to: '20201231' }]);
    expect(parse('study', 'StudyDate=-20201231').keys[0]?.matchers).toEqual([{ kind: 'range', to: '20201231' }]);
    expect(parse('study', 'StudyDate=20200101-').keys[0]?.matchers).toEqual([{ kind: 'range', from: '20200101' }]);
    expect(parse('study', 'StudyDate=20200229').keys[0]?.matchers).toEqual([{ kind: 'single', value: '20200229' }]);
  });

  test('given a time range, then its end covers the whole period its precision names', () => {
    expect(parse('study', 'StudyTime=08-10').keys[0]?.matchers).toEqual([{ kind: 'range', from: '08', to: '105959.999999' }]);
    expect(parse('study', 'StudyTime=-1030').keys[0]?.matchers).toEqual([{ kind: 'range', to: '103059.999999' }]);
    expect(parse('study', 'StudyTime=-103015.5').keys[0]?.matchers).toEqual([{ kind: 'range', to: '103015.599999' }]);
  });

  test('given a numeric key, then a number', () => {
    expect(parse('instance', 'InstanceNumber=7').keys[0]).toMatchObject({ vr: 'IS', matchers: [{ kind: 'single', value: 7 }] });
  });

  test('given includefield by keyword, tag, repeated or comma-separated, then their tags; given all, then all', () => {
    expect(parse('study', 'includefield=StudyDescription,00100030&includefield=00081030').includeFields).toEqual(['00081030', '00100030']);
    expect(parse('study', 'includefield=StudyDescription&includefield=all').includeFields).toBe('all');
  });

  test('given limit and offset, then those; given a limit over the maximum, then the maximum and a warning', () => {
    expect(parse('study', 'limit=10&offset=20')).toMatchObject({ limit: 10, offset: 20, warnings: [] });
    const clamped = parse('study', 'limit=5000');
    expect(clamped.limit).toBe(1000);
    expect(clamped.warnings).toEqual([expect.stringMatching(/limit has been reduced to 1000/)]);
  });

  test('given fuzzymatching=false, then nothing; given true, then literal matching and a warning', () => {
    expect(parse('study', 'fuzzymatching=false').warnings).toEqual([]);
    expect(parse('study', 'fuzzymatching=true').warnings).toEqual([expect.stringMatching(/fuzzymatching parameter is not supported/)]);
  });

  test('given UIDs in the path, then the query is confined to them', () => {
    expect(parse('instance', '', { study: '1.2.3', series: '1.2.3.4' })).toMatchObject({ studyInstanceUid: '1.2.3', seriesInstanceUid: '1.2.3.4' });
  });

  test('given study keys on all series or all instances, then they are accepted', () => {
    expect(parse('series', 'PatientID=X&Modality=CT').keys.map((k) => k.level)).toEqual(['study', 'series']);
    expect(parse('instance', 'StudyDate=20200101&Modality=CT&SOPClassUID=1.2').keys.map((k) => k.level)).toEqual(['study', 'series', 'instance']);
  });

  test.each([
    ['study', 'PatientNme=X', {}, /PatientNme is not a DICOM attribute keyword or tag \(query key\)/],
    ['study', 'includefield=PatientNme', {}, /PatientNme is not a DICOM attribute keyword or tag \(includefield\)/],
    ['study', 'Rows=512', {}, /Rows is not a searchable attribute/],
    ['study', 'Modality=CT', {}, /Modality is a series-level attribute and cannot be matched at this resource \(study attributes only\)/],
    ['series', 'PatientID=X', { study: '1.2' }, /PatientID is a study-level attribute/],
    ['instance', 'Modality=CT', { study: '1.2', series: '1.2.3' }, /Modality is a series-level attribute/],
    ['study', 'StudyDate=2020-01-01', {}, /StudyDate needs a date YYYYMMDD/],
    ['study', 'StudyDate=20200230', {}, /StudyDate has a date that does not exist/],
    ['study', 'StudyDate=202001-20201231', {}, /StudyDate needs a date/],
    ['study', 'StudyDate=20201231-20200101', {}, /start is after its end/],
    ['study', 'StudyDate=-', {}, /range with neither start nor end/],
    ['study', 'StudyDate=2020*', {}, /StudyDate is a date: wild cards are not allowed/],
    ['study', 'StudyTime=2500', {}, /StudyTime needs a time/],
    ['study', 'StudyTime=1100-1000', {}, /start is after its end/],
    ['study', 'StudyInstanceUID=1.2.*', {}, /StudyInstanceUID is a UID: wild cards are not allowed/],
    ['study', 'StudyInstanceUID=1.2.x', {}, /StudyInstanceUID holds a value that is not a UID/],
    ['instance', 'InstanceNumber=1*', {}, /InstanceNumber is numeric: wild cards are not allowed/],
    ['instance', 'InstanceNumber=one', {}, /InstanceNumber needs a number/],
    ['series', 'RequestAttributeSequence.RequestedProcedureID=1', {}, /Sequence matching is not supported/],
    ['study', 'limit=abc', {}, /limit must be a non-negative integer/],
    ['study', 'limit=0', {}, /limit must be at least 1/],
    ['study', 'limit=-5', {}, /limit must be a non-negative integer/],
    ['study', 'offset=1.5', {}, /offset must be a non-negative integer/],
    ['study', 'fuzzymatching=maybe', {}, /fuzzymatching must be true or false/],
    ['series', '', { study: 'not-a-uid' }, /the study in the path is not a UID/],
  ] as const)('given %s?%s, then 400 QUERY_INVALID saying why', (level, query, path, message) => {
    const e = parseError(level, query, path);
    expect(e.code).toBe(ErrorCodes.QUERY_INVALID);
    expect(e.message).toMatch(message);
  });

  test('given a bad value, then the message names the attribute but does not echo the value', () => {
    expect(parseError('study', 'StudyDate=19991399').message).not.toContain('19991399');
  });
});

describe('buildCatalogQuery', () => {
  const build = (level: QidoLevel, query: string, path: { study?: string; series?: string } = {}) => buildCatalogQuery(parse(level, query, path));
  const params = (sql: SqlQuery) => Object.fromEntries(sql.parameters.map((p) => [p.name, p.value]));

  test('given an exact key, then an equality on the DICOM JSON value, ordered by id, across partitions, without a post-filter', () => {
    const { sql, partitionKey, postFilter } = build('study', 'PatientID=RID1');
    expect(sql.query).toBe(
      'SELECT c.id, c.type, c.studyInstanceUid, c.seriesInstanceUid, c.sopInstanceUid, c.sopClassUid, c.modality, c.dicom, '
      + 'c.modalitiesInStudy, c.numberOfStudyRelatedSeries, c.numberOfStudyRelatedInstances, c.numberOfSeriesRelatedInstances '
      + 'FROM c WHERE c.type = @p0 AND c.dicom["00100020"]["Value"][0] = @p1 ORDER BY c.id',
    );
    expect(params(sql)).toEqual({ '@p0': 'study', '@p1': 'RID1' });
    expect(partitionKey).toBeUndefined();
    expect(postFilter).toBeUndefined();
  });

  test('given a value with SQL in it, then it only ever travels as a parameter', () => {
    const { sql } = build('study', `AccessionNumber=x" OR 1=1 --`);
    expect(sql.query).not.toContain('1=1');
    expect(params(sql)['@p1']).toBe('x" OR 1=1 --');
  });

  test('given the study in the path, then one partition and the study condition', () => {
    const { sql, partitionKey } = build('instance', '', { study: '1.2.3', series: '1.2.3.4' });
    expect(partitionKey).toBe('1.2.3');
    expect(sql.query).toContain('c.type = @p0 AND c.studyInstanceUid = @p1 AND c.seriesInstanceUid = @p2 ');
    expect(params(sql)).toEqual({ '@p0': 'instance', '@p1': '1.2.3', '@p2': '1.2.3.4' });
  });

  test('given one StudyInstanceUID as a key, then one partition; given a list, then IN across partitions', () => {
    expect(build('series', 'StudyInstanceUID=1.2.3').partitionKey).toBe('1.2.3');
    const list = build('study', 'StudyInstanceUID=1.2.3,1.2.4');
    expect(list.partitionKey).toBeUndefined();
    expect(list.sql.query).toContain('c.studyInstanceUid IN (@p1, @p2)');
  });

  test('given ModalitiesInStudy, then ARRAY_CONTAINS on the study summary, ORed for a list', () => {
    expect(build('study', 'ModalitiesInStudy=CT').sql.query).toContain('ARRAY_CONTAINS(c.modalitiesInStudy, @p1)');
    expect(build('study', 'ModalitiesInStudy=CT,MR').sql.query)
      .toContain('((ARRAY_CONTAINS(c.modalitiesInStudy, @p1)) OR (ARRAY_CONTAINS(c.modalitiesInStudy, @p2)))');
  });

  test('given ModalitiesInStudy on all series, then a first pass over studies and a series query without it', () => {
    const q = parse('series', 'ModalitiesInStudy=MR&PatientID=RID2&Modality=CT');
    const series = buildCatalogQuery(q);
    expect(series.sql.query).not.toContain('modalitiesInStudy)');
    expect(series.sql.query).toContain('c.dicom["00100020"]["Value"][0] = @p1 AND c.modality = @p2');
    const studies = buildStudyPassQuery(q);
    expect(studies?.sql.query).toContain('c.type = @p0 AND ARRAY_CONTAINS(c.modalitiesInStudy, @p1) AND c.dicom["00100020"]["Value"][0] = @p2');
    expect(buildStudyPassQuery(parse('series', 'Modality=CT'))).toBeUndefined();
  });

  test('given a date range, then >= and <=; given an open range, then one bound', () => {
    const { sql } = build('study', 'StudyDate=20200101-20201231');
    expect(sql.query).toContain('c.dicom["00080020"]["Value"][0] >= @p1 AND c.dicom["00080020"]["Value"][0] <= @p2');
    expect(params(sql)).toMatchObject({ '@p1': '20200101', '@p2': '20201231' });
    expect(build('study', 'StudyDate=-20201231').sql.query).toContain('c.dicom["00080020"]["Value"][0] <= @p1 ORDER BY');
  });

  test('given a trailing *, then STARTSWITH and no post-filter', () => {
    const { sql, postFilter } = build('study', 'PatientID=RID*');
    expect(sql.query).toContain('STARTSWITH(c.dicom["00100020"]["Value"][0], @p1)');
    expect(params(sql)['@p1']).toBe('RID');
    expect(postFilter).toBeUndefined();
  });

  test('given a wild card inside, then STARTSWITH on the literal prefix and a post-filter for the rest', () => {
    const { sql, postFilter } = build('study', 'PatientID=RID?1*');
    expect(sql.query).toContain('STARTSWITH(c.dicom["00100020"]["Value"][0], @p1)');
    expect(postFilter).toBeDefined();
    const doc = (id: string): QidoDocument => ({ id, type: 'study', studyInstanceUid: '1', dicom: { '00100020': { vr: 'LO', Value: [id] } } });
    expect(postFilter?.(doc('RIDA1'))).toBe(true);
    expect(postFilter?.(doc('RIDA2'))).toBe(false);
    expect(postFilter?.(doc('rida1'))).toBe(false);
  });

  test('given a leading wild card before a literal end, then ENDSWITH and no post-filter; given wild cards only, then no SQL for it and a post-filter', () => {
    const endsWith = build('study', 'StudyDescription=*HEAD');
    expect(endsWith.sql.query).toContain('ENDSWITH(c.dicom["00081030"]["Value"][0], @p1)');
    expect(endsWith.postFilter).toBeUndefined();
    const only = build('study', 'StudyDescription=?*');
    expect(only.sql.query).not.toContain('00081030');
    expect(only.postFilter).toBeDefined();
  });

  test('given a person name, then a case-insensitive post-filter on the Alphabetic group', () => {
    const { sql, postFilter } = build('study', 'PatientName=anon^b*');
    expect(sql.query).not.toContain('00100010');
    const doc = (name: string): QidoDocument => ({ id: name, type: 'study', studyInstanceUid: '1', dicom: { '00100010': { vr: 'PN', Value: [{ Alphabetic: name }] } } });
    expect(postFilter?.(doc('ANON^BETA'))).toBe(true);
    expect(postFilter?.(doc('ANON^ALPHA'))).toBe(false);
    expect(postFilter?.({ id: 'x', type: 'study', studyInstanceUid: '1', dicom: {} })).toBe(false);
  });

  test('given a number, then the number or its string form', () => {
    const { sql } = build('instance', 'InstanceNumber=5');
    expect(sql.query).toContain('c.dicom["00200013"]["Value"][0] IN (@p1, @p2)');
    expect(params(sql)).toMatchObject({ '@p1': 5, '@p2': '5' });
  });

  test('given a universal key, then no condition for it', () => {
    expect(build('study', 'PatientID=').sql.query).toBe(build('study', '').sql.query);
  });
});

/** A reader over documents in memory: ignores the SQL, so tests choose keys it need not decide. */
class FakeReader implements ResearchCatalogReader {
  yielded = 0;
  queries: SqlQuery[] = [];
  constructor(private readonly docs: QidoDocument[], private readonly failure?: unknown) {}
  async *query<T>(spec: SqlQuery): AsyncIterable<T> {
    this.queries.push(spec);
    if (this.failure) throw this.failure;
    const type = spec.parameters.find((p) => p.name === '@p0')?.value;
    for (const doc of this.docs) {
      if (doc.type !== type) continue;
      this.yielded++;
      yield doc as unknown as T;
    }
  }
}

function studyDoc(n: number, extra: Partial<QidoDocument> = {}): QidoDocument {
  return {
    id: `1.2.${n}`,
    type: 'study',
    studyInstanceUid: `1.2.${n}`,
    dicom: {
      '0020000D': { vr: 'UI', Value: [`1.2.${n}`] },
      '00100020': { vr: 'LO', Value: [`RID${n}`] },
      '00081030': { vr: 'LO', Value: ['DESC'] },
    },
    modalitiesInStudy: ['CT'],
    numberOfStudyRelatedSeries: 1,
    numberOfStudyRelatedInstances: 3,
    ...extra,
  };
}

describe('runQido', () => {
  const docs = Array.from({ length: 10 }, (_, i) => studyDoc(i));
  const query = (text: string): QidoQuery => parse('study', text);

  test('given offset and limit, then that slice, and reading stops once the page is full', async () => {
    const reader = new FakeReader(docs);
    const result = await runQido(reader, query('offset=3&limit=2'));
    expect(result.map((ds) => ds['0020000D']?.Value?.[0])).toEqual(['1.2.3', '1.2.4']);
    expect(reader.yielded).toBe(5);
  });

  test('given a study, then the default attributes from dicom and summaries, empty required ones, sorted by tag, and nothing else', async () => {
    const [study] = await runQido(new FakeReader(docs), query('limit=1'));
    expect(study).toEqual({
      '00080020': { vr: 'DA' },
      '00080030': { vr: 'TM' },
      '00080050': { vr: 'SH' },
      '00080061': { vr: 'CS', Value: ['CT'] },
      '00080090': { vr: 'PN' },
      '00100010': { vr: 'PN' },
      '00100020': { vr: 'LO', Value: ['RID0'] },
      '00100030': { vr: 'DA' },
      '00100040': { vr: 'CS' },
      '0020000D': { vr: 'UI', Value: ['1.2.0'] },
      '00200010': { vr: 'SH' },
      '00201206': { vr: 'IS', Value: [1] },
      '00201208': { vr: 'IS', Value: [3] },
    });
    expect(Object.keys(study as DicomJson)).toEqual(Object.keys(study as DicomJson).sort());
  });

  test('given includefield=all, then every attribute of dicom too', async () => {
    const [study] = await runQido(new FakeReader(docs), query('limit=1&includefield=all'));
    expect(study?.['00081030']).toEqual({ vr: 'LO', Value: ['DESC'] });
  });

  test('given a post-filtered key, then offset counts matches only', async () => {
    const named = docs.map((d, i) => ({ ...d, dicom: { ...d.dicom, '00100010': { vr: 'PN', Value: [{ Alphabetic: i % 2 ? 'ODD^X' : 'EVEN^X' }] } } }));
    const result = await runQido(new FakeReader(named), query('PatientName=odd*&offset=1&limit=2'));
    expect(result.map((ds) => ds['0020000D']?.Value?.[0])).toEqual(['1.2.3', '1.2.5']);
  });
});

describe('Retrieve URL (0008,1190)', () => {
  const ROOT = 'https://vna.example/api/dicomweb';
  const series: QidoDocument = { id: '1.2.0.1', type: 'series', studyInstanceUid: '1.2.0', seriesInstanceUid: '1.2.0.1', modality: 'CT', dicom: { '00080060': { vr: 'CS', Value: ['CT'] } }, numberOfSeriesRelatedInstances: 1 };
  const instance: QidoDocument = { id: '1.2.0.1.1', type: 'instance', studyInstanceUid: '1.2.0', seriesInstanceUid: '1.2.0.1', sopInstanceUid: '1.2.0.1.1', sopClassUid: '1.2.840.10008.5.1.4.1.1.2', dicom: {} };
  const docs = [studyDoc(0), series, instance];

  test('given a DICOMweb root, then each study, series and instance carries the WADO-RS URL of its resource', async () => {
    const url = async (level: QidoLevel, text = '') => (await runQido(new FakeReader(docs), parse(level, text), { retrieveRoot: ROOT }))[0]?.['00081190'];
    expect(await url('study')).toEqual({ vr: 'UR', Value: [`${ROOT}/studies/1.2.0`] });
    expect(await url('series')).toEqual({ vr: 'UR', Value: [`${ROOT}/studies/1.2.0/series/1.2.0.1`] });
    expect(await url('instance')).toEqual({ vr: 'UR', Value: [`${ROOT}/studies/1.2.0/series/1.2.0.1/instances/1.2.0.1.1`] });
    expect(await url('study', 'includefield=all')).toEqual({ vr: 'UR', Value: [`${ROOT}/studies/1.2.0`] });
  });

  test('given the attributes of a match, then the Retrieve URL sits in tag order among them', async () => {
    const [study] = await runQido(new FakeReader(docs), parse('study', ''), { retrieveRoot: ROOT });
    expect(Object.keys(study as DicomJson)).toEqual(Object.keys(study as DicomJson).sort());
  });

  test('given request URLs of each QIDO-RS resource, then the DICOMweb root they came through', () => {
    expect(dicomwebRootOf('http://localhost:7071/api/dicomweb/studies?limit=1')).toBe('http://localhost:7071/api/dicomweb');
    expect(dicomwebRootOf('http://localhost:7071/api/dicomweb/studies/1.2.3/series')).toBe('http://localhost:7071/api/dicomweb');
    expect(dicomwebRootOf('https://vna.example/api/dicomweb/series')).toBe('https://vna.example/api/dicomweb');
    expect(dicomwebRootOf('https://vna.example/api/dicomweb/studies/1.2/series/1.3/instances')).toBe('https://vna.example/api/dicomweb');
    expect(dicomwebRootOf('https://vna.example/dicomweb/instances')).toBe('https://vna.example/dicomweb');
  });

  test('given a QIDO-RS request, then the handler answers with Retrieve URLs under the root it was called through', async () => {
    const res = await createQidoHandler(async () => new FakeReader(docs), 'study', { limits: () => QIDO_DEFAULT_LIMITS })(
      new HttpRequest({ method: 'GET', url: 'http://127.0.0.1:7071/api/dicomweb/studies?limit=1' }),
      new InvocationContext({ functionName: 'qido', logHandler: () => undefined }),
    );
    expect((res.jsonBody as DicomJson[])[0]?.['00081190']).toEqual({ vr: 'UR', Value: ['http://127.0.0.1:7071/api/dicomweb/studies/1.2.0'] });
  });
});

describe('createQidoHandler', () => {
  const context = () => new InvocationContext({ functionName: 'qido', logHandler: () => undefined });
  const call = (reader: ResearchCatalogReader, url: string): Promise<HttpResponseInit> =>
    createQidoHandler(async () => reader, 'study', { limits: () => QIDO_DEFAULT_LIMITS })(new HttpRequest({ method: 'GET', url }), context());

  test('given matches, then 200 application/dicom+json with the array', async () => {
    const res = await call(new FakeReader([studyDoc(1)]), 'http://localhost/api/dicomweb/studies');
    expect(res.status).toBe(200);
    expect(res.headers).toMatchObject({ 'content-type': 'application/dicom+json' });
    expect((res.jsonBody as DicomJson[])[0]?.['0020000D']).toEqual({ vr: 'UI', Value: ['1.2.1'] });
  });

  test('given a limit over the maximum, then a 299 Warning header', async () => {
    const res = await call(new FakeReader([]), 'http://localhost/api/dicomweb/studies?limit=99999');
    expect(res.status).toBe(200);
    expect(res.headers).toMatchObject({ warning: expect.stringMatching(/^299 dicomweb ".*limit has been reduced/) });
  });

  test('given a bad query, then 400 with the error body and no catalog read', async () => {
    const reader = new FakeReader([]);
    const res = await call(reader, 'http://localhost/api/dicomweb/studies?Foo=1');
    expect(res.status).toBe(400);
    expect(res.jsonBody).toEqual({ error: { code: 'QUERY_INVALID', message: 'Foo is not a DICOM attribute keyword or tag (query key)' } });
    expect(reader.queries).toHaveLength(0);
  });

  test('given the catalog unavailable, then 503', async () => {
    const res = await call(new FakeReader([], new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'research catalog query: service error (503)')), 'http://localhost/api/dicomweb/studies');
    expect(res.status).toBe(503);
    expect(res.jsonBody).toMatchObject({ error: { code: 'SERVICE_UNAVAILABLE' } });
  });

  test('given an unexpected failure, then 500 that says nothing internal', async () => {
    const res = await call(new FakeReader([], new Error('secret detail')), 'http://localhost/api/dicomweb/studies');
    expect(res.status).toBe(500);
    expect(res.jsonBody).toEqual({ error: { code: 'INTERNAL', message: 'internal error' } });
  });
});
