/**
 * Every HTTP function, called as the host calls it, with each role's token and without one:
 * the role check of each route, what the access audit records, and that an answer whose access
 * cannot be recorded is withheld.
 */
import { HttpRequest, type HttpResponseInit, InvocationContext } from '@azure/functions';

import { azuriteConnectionString, cosmosEmulatorConnectionString } from '../../../local/emulators';
import { createAuthenticator } from '../../../shared/auth/authenticator';
import type { IngestionDocument } from '../../../shared/catalog/documents';
import type { ResearchCatalogReader, SqlQuery } from '../../../shared/catalog/researchCatalog';
import { loadSettings } from '../../../shared/config/settings';
import { ErrorCodes, PipelineError } from '../../../shared/errors';
import { AUDIENCE, easyAuthHeader, ISSUER, makeKeys, MemoryAccessAudit, type TestKeys, token, validatorFor } from '../auth/authFixtures';

const STUDY = '2.25.1001';
const SOURCE = 'http://127.0.0.1:10000/devstoreaccount1/anq-replica/DOE%5EJANE/ct1.dcm';

class StudyReader implements ResearchCatalogReader {
  async *query<T>(spec: SqlQuery): AsyncIterable<T> {
    if (spec.parameters.find((p) => p.name === '@p0')?.value !== 'study') return;
    yield { id: STUDY, type: 'study', studyInstanceUid: STUDY, dicom: { '0020000D': { vr: 'UI', Value: [STUDY] }, '00100020': { vr: 'LO', Value: ['PSEUDO1'] } }, modalitiesInStudy: ['CT'] } as unknown as T;
  }
}

const ingestion = {
  id: 'abc',
  sourceUrl: SOURCE,
  status: 'cataloged',
  sha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  original: { studyInstanceUid: '1.2.840.99.1' },
  research: { studyInstanceUid: STUDY, seriesInstanceUid: '2.25.2002', sopInstanceUid: '2.25.3003', blob: 'x' },
} as unknown as IngestionDocument;

const mockRuntime: Record<string, unknown> = {};
jest.mock('../../../shared/runtime', () => ({ runtime: async () => mockRuntime }));

// Imported after the mock: the function files take the runtime from it.
import { audit } from '../../../functions/audit';
import { health } from '../../../functions/health';
import { ingestions } from '../../../functions/ingestions';
import * as qido from '../../../functions/qido';
import { statistics } from '../../../functions/statistics';

type Who = 'none' | 'research' | 'sharing' | 'operations';
const ROLE_OF: Record<Exclude<Who, 'none'>, string> = { research: 'Research.Read', sharing: 'Sharing.Manage', operations: 'Operations.Read' };

interface Route {
  name: string;
  handler: (request: HttpRequest, context: InvocationContext) => Promise<unknown>;
  url: string;
  params?: Record<string, string>;
  /** The status each caller gets. */
  expect: Record<Who, number>;
}

const research = { none: 401, research: 200, sharing: 403, operations: 403 };
const operations = { none: 401, research: 403, sharing: 403, operations: 200 };
const ROUTES: Route[] = [
  { name: 'qidoStudies', handler: qido.qidoStudies, url: '/api/dicomweb/studies', expect: research },
  { name: 'qidoStudySeries', handler: qido.qidoStudySeries, url: `/api/dicomweb/studies/${STUDY}/series`, params: { study: STUDY }, expect: research },
  { name: 'qidoSeries', handler: qido.qidoSeries, url: '/api/dicomweb/series', expect: research },
  { name: 'qidoStudySeriesInstances', handler: qido.qidoStudySeriesInstances, url: `/api/dicomweb/studies/${STUDY}/series/2.25.2/instances`, params: { study: STUDY, series: '2.25.2' }, expect: research },
  { name: 'qidoStudyInstances', handler: qido.qidoStudyInstances, url: `/api/dicomweb/studies/${STUDY}/instances`, params: { study: STUDY }, expect: research },
  { name: 'qidoInstances', handler: qido.qidoInstances, url: '/api/dicomweb/instances', expect: research },
  { name: 'ingestions', handler: ingestions, url: `/api/ingestions?source=${encodeURIComponent(SOURCE)}`, expect: operations },
  { name: 'audit', handler: audit, url: '/api/audit', expect: operations },
  // Either role: research counts for Research.Read, ingestion outcomes for Operations.Read.
  { name: 'statistics', handler: statistics, url: '/api/statistics', expect: { none: 401, research: 200, sharing: 403, operations: 200 } },
];

let keys: TestKeys;
let accessAudit: MemoryAccessAudit;

const SETTINGS_ENV = { SourceStorage: azuriteConnectionString(), CosmosDb: cosmosEmulatorConnectionString(), DEID_KEY: 'unit-test-key-0123456789abcdef-0123' };

const context = () => new InvocationContext({ functionName: 'test', invocationId: 'inv-1', logHandler: (level, ...args) => { if (process.env.DEBUG_ROUTES) console.log(level, ...args); } });

async function call(route: Pick<Route, 'handler' | 'url' | 'params'>, headers: Record<string, string> = {}): Promise<HttpResponseInit> {
  const request = new HttpRequest({ method: 'GET', url: `http://localhost${route.url}`, headers, params: route.params ?? {} });
  return (await route.handler(request, context())) as HttpResponseInit;
}

async function bearer(who: Exclude<Who, 'none'>, extra: Parameters<typeof token>[1] = {}): Promise<Record<string, string>> {
  return { authorization: `Bearer ${await token(keys, { oid: `${who}-oid`, roles: [ROLE_OF[who]], ...extra })}` };
}

beforeAll(async () => {
  keys = await makeKeys('route-key');
});

beforeEach(() => {
  accessAudit = new MemoryAccessAudit();
  Object.assign(mockRuntime, {
    auth: createAuthenticator({ mode: 'entra', issuers: [ISSUER], audiences: [AUDIENCE], jwks: { kind: 'url', url: 'https://unused.invalid' }, clockToleranceSeconds: 0 }, validatorFor(keys)),
    accessAudit,
    researchCatalogReader: new StudyReader(),
    index: { get: async () => ({ doc: ingestion, etag: '"1"' }), findByResearchInstance: async () => [ingestion] },
    sourceBlobEndpoints: ['http://127.0.0.1:10000/devstoreaccount1'],
    // Real settings with their defaults: the handlers read what they need of them (container names, QIDO limits).
    settings: loadSettings(SETTINGS_ENV),
    health: async () => ({ catalog: 'ok' }),
    ingestionOutcomes: { outcomes: async () => ({ byStatus: { cataloged: 1 }, byError: [] }) },
    telemetry: { trackFailure: jest.fn() },
  });
});

describe('role checks, route by route', () => {
  for (const route of ROUTES) {
    for (const who of ['none', 'research', 'sharing', 'operations'] as Who[]) {
      test(`given ${who === 'none' ? 'no token' : `a token with ${ROLE_OF[who]} only`}, then ${route.name} answers ${route.expect[who]}`, async () => {
        const res = await call(route, who === 'none' ? {} : await bearer(who));
        expect(res.status).toBe(route.expect[who]);
        if (res.status === 401) {
          // No credentials at all: the bare challenge, without an error code (RFC 6750 3.1).
          expect(res.headers).toMatchObject({ 'www-authenticate': 'Bearer realm="api"' });
          expect(res.jsonBody).toMatchObject({ error: { code: ErrorCodes.UNAUTHENTICATED } });
        }
        if (res.status === 403) expect(res.jsonBody).toMatchObject({ error: { code: ErrorCodes.FORBIDDEN, message: expect.stringContaining(route.expect.research === 200 ? 'Research.Read' : 'Operations.Read') } });
      });
    }
  }

  test('given statistics asked with Research.Read, then counts without ingestion outcomes; with Operations.Read, outcomes without counts', async () => {
    const route = { handler: statistics, url: '/api/statistics' };
    const asResearch = (await call(route, await bearer('research'))).jsonBody as Record<string, unknown>;
    expect(asResearch).toHaveProperty('breakdowns');
    expect(asResearch).not.toHaveProperty('ingestions');
    const asOperator = (await call(route, await bearer('operations'))).jsonBody as Record<string, unknown>;
    expect(asOperator).toEqual({ ingestions: { byStatus: { cataloged: 1 }, byError: [] } });
    expect(accessAudit.records.map((r) => r.role)).toEqual(['Research.Read', 'Operations.Read']);
  });

  test('given no token, then /api/health still answers 200', async () => {
    const res = await health(new HttpRequest({ method: 'GET', url: 'http://localhost/api/health' }), context());
    expect(res.status).toBe(200);
  });

  test('given an expired token, a token for another audience or issuer, or a bad signature, then 401 invalid_token on every route', async () => {
    const other = await makeKeys('route-key');
    const tokens = [
      await token(keys, { roles: ['Research.Read', 'Operations.Read'], expiresIn: -60 }),
      await token(keys, { roles: ['Research.Read', 'Operations.Read'], audience: 'api://other' }),
      await token(keys, { roles: ['Research.Read', 'Operations.Read'], issuer: 'https://login.microsoftonline.com/other/v2.0' }),
      await token(other, { roles: ['Research.Read', 'Operations.Read'] }),
    ];
    for (const route of ROUTES) {
      for (const t of tokens) {
        const res = await call(route, { authorization: `Bearer ${t}` });
        expect({ route: route.name, status: res.status, challenge: (res.headers as Record<string, string>)['www-authenticate'] }).toEqual({
          route: route.name,
          status: 401,
          challenge: expect.stringContaining('error="invalid_token"'),
        });
      }
    }
    expect(accessAudit.records).toEqual([]);
  });

  test('given an Easy Auth principal header with every role but AUTH_MODE entra, then 401: the header is not trusted', async () => {
    const header = easyAuthHeader([{ typ: 'oid', val: 'forger' }, { typ: 'roles', val: 'Research.Read' }, { typ: 'roles', val: 'Operations.Read' }]);
    for (const route of ROUTES) expect((await call(route, { 'x-ms-client-principal': header })).status).toBe(401);
  });

  test('given AUTH_MODE easyauth, then the principal header is accepted and its roles checked', async () => {
    mockRuntime.auth = createAuthenticator({ mode: 'easyauth' });
    const researcher = easyAuthHeader([{ typ: 'http://schemas.microsoft.com/identity/claims/objectidentifier', val: 'easy-1' }, { typ: 'roles', val: 'Research.Read' }]);
    expect((await call(ROUTES[0] as Route, { 'x-ms-client-principal': researcher })).status).toBe(200);
    expect((await call(ROUTES[6] as Route, { 'x-ms-client-principal': researcher })).status).toBe(403);
    expect((await call(ROUTES[0] as Route, await bearer('research'))).status).toBe(401);
    expect(accessAudit.records.map((r) => [r.callerId, r.via, r.status])).toEqual([['easy-1', 'easyauth', 200], ['easy-1', 'easyauth', 403]]);
  });
});

describe('the access audit', () => {
  const studies = ROUTES[0] as Route;

  test('given a QIDO call, then one record with the caller, the route, the status, the research UIDs returned and the query keys but not their values', async () => {
    const res = await call({ ...studies, url: `/api/dicomweb/studies?PatientID=PSEUDO1&StudyInstanceUID=${STUDY},1.2.840.99.1` }, await bearer('research', { claims: { azp: 'viewer-app', scp: 'x' } }));
    expect(res.status).toBe(200);
    // A search for a name: nothing matches, and the name is not kept.
    expect((await call({ ...studies, url: '/api/dicomweb/studies?PatientName=DOE%5EJANE' }, await bearer('research'))).status).toBe(200);
    expect(accessAudit.records).toHaveLength(2);
    expect(accessAudit.records[1]).toMatchObject({ queryKeys: ['PatientName'], returned: { studies: [] }, status: 200 });
    const record = accessAudit.records[0];
    expect(record).toMatchObject({
      callerId: 'research-oid',
      callerKind: 'user',
      appId: 'viewer-app',
      route: 'qidoStudies',
      method: 'GET',
      role: 'Research.Read',
      status: 200,
      returned: { studies: [STUDY], series: [], instances: [] },
      // The original-looking UID the caller asked for is not in the answer, so it is not recorded.
      requested: { studies: [STUDY], series: [], instances: [] },
      queryKeys: ['PatientID', 'StudyInstanceUID'],
      invocationId: 'inv-1',
    });
    expect(record?.pk).toBe(`research-oid|${record?.time.slice(0, 7)}`);
    const text = JSON.stringify(accessAudit.records);
    expect(text).not.toContain('DOE');
    expect(text).not.toContain('PSEUDO1');
    expect(text).not.toContain('1.2.840.99.1');
  });

  test('given the operations view, then the record holds the research UIDs and the content hash, never the source URL or original UIDs', async () => {
    expect((await call(ROUTES[6] as Route, await bearer('operations'))).status).toBe(200);
    const text = JSON.stringify(accessAudit.records);
    expect(accessAudit.records[0]).toMatchObject({ route: 'ingestions', returned: { studies: [STUDY], series: ['2.25.2002'], instances: ['2.25.3003'] }, sourceSha256: ingestion.sha256 });
    expect(text).not.toContain('DOE');
    expect(text).not.toContain('anq-replica');
    expect(text).not.toContain('1.2.840.99.1');
  });

  test('given a QIDO call recorded, then an operator reads it by caller and a researcher may not read the audit', async () => {
    await call(studies, await bearer('research'));
    const asResearcher = await call({ ...ROUTES[7], url: '/api/audit?caller=research-oid' } as Route, await bearer('research'));
    expect(asResearcher.status).toBe(403);
    const asOperator = await call({ ...ROUTES[7], url: '/api/audit?caller=research-oid' } as Route, await bearer('operations'));
    expect(asOperator.status).toBe(200);
    const body = asOperator.jsonBody as { records: { route: string; callerId: string; returned: { studies: string[] } }[] };
    // The researcher's refused attempt on the audit is in it too (with nothing returned).
    expect(body.records.map((r) => [r.callerId, r.route, r.returned.studies]).sort()).toEqual([
      ['research-oid', 'audit', []],
      ['research-oid', 'qidoStudies', [STUDY]],
    ]);
    // The operator's read is recorded as well.
    expect(accessAudit.records.map((r) => [r.callerId, r.route, r.status])).toEqual([
      ['research-oid', 'qidoStudies', 200],
      ['research-oid', 'audit', 403],
      ['operations-oid', 'audit', 200],
    ]);
  });

  test('given an audit query with a malformed time, then 400 naming the parameter', async () => {
    const res = await call({ ...ROUTES[7], url: '/api/audit?from=yesterday' } as Route, await bearer('operations'));
    expect(res.status).toBe(400);
    expect((res.jsonBody as { error: { message: string } }).error.message).toMatch(/^"from" must be an ISO 8601/);
  });

  test('given the audit store cannot be written, then 503 with Retry-After, the answer withheld and a telemetry failure to alert on', async () => {
    accessAudit.failWith = new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'writing the access audit: service error (503)');
    for (const route of [studies, ROUTES[6] as Route]) {
      const res = await call(route, await bearer(route === studies ? 'research' : 'operations'));
      expect(res.status).toBe(503);
      expect(res.headers).toMatchObject({ 'retry-after': '5' });
      expect(JSON.stringify(res.jsonBody)).not.toContain(STUDY);
    }
    expect((mockRuntime.telemetry as { trackFailure: jest.Mock }).trackFailure.mock.calls).toEqual([
      ['ACCESS_AUDIT_UNAVAILABLE', 'qidoStudies'],
      ['ACCESS_AUDIT_UNAVAILABLE', 'ingestions'],
    ]);
  });

  test('given a QIDO answer the audit cannot read (not a DICOM JSON array), then 503: it is withheld, not recorded as empty', async () => {
    const { qidoAccessTarget } = await import('../../../shared/audit/targets');
    const { requireRole } = await import('../../../shared/auth/guard');
    const streamed = requireRole(async () => mockRuntime as never, { route: 'qidoStudies', role: 'Research.Read', describe: qidoAccessTarget }, async () => ({ status: 200, body: `[{"0020000D":{"vr":"UI","Value":["${STUDY}"]}}]` }));
    const res = await call({ handler: streamed, url: '/api/dicomweb/studies' }, await bearer('research'));
    expect(res.status).toBe(503);
    expect(res.body).toBeUndefined();
    expect(accessAudit.records).toEqual([]);
  });

  test('given the audit store cannot be written, then a caller without the role still gets 403', async () => {
    accessAudit.failWith = new Error('down');
    expect((await call(studies, await bearer('operations'))).status).toBe(403);
  });
});
