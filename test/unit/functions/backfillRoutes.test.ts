/**
 * POST and GET /api/backfill, called as the host calls them: the roles (Operations.Manage to
 * start, Operations.Read or Operations.Manage to read), the request's validation, one job at a
 * time, and a status without names.
 */
import { HttpRequest, type HttpResponseInit, InvocationContext } from '@azure/functions';

import { azuriteConnectionString, cosmosEmulatorConnectionString } from '../../../local/emulators';
import { createAuthenticator } from '../../../shared/auth/authenticator';
import type { BackfillJobDocument, BackfillJobStore } from '../../../shared/backfill/job';
import { loadSettings } from '../../../shared/config/settings';
import { ErrorCodes, PipelineError } from '../../../shared/errors';
import { AUDIENCE, ISSUER, makeKeys, MemoryAccessAudit, type TestKeys, token, validatorFor } from '../auth/authFixtures';

class MemoryJobStore implements BackfillJobStore {
  doc?: BackfillJobDocument;
  private n = 0;
  async read() {
    return this.doc ? { document: structuredClone(this.doc), etag: `e${this.n}` } : undefined;
  }
  async write(document: BackfillJobDocument, etag: string | undefined) {
    if ((this.doc ? `e${this.n}` : undefined) !== etag) throw new PipelineError(ErrorCodes.CATALOG_CONFLICT, 'changed');
    this.doc = structuredClone(document);
    return `e${++this.n}`;
  }
}

const mockRuntime: Record<string, unknown> = {};
const mockJobs = { store: new MemoryJobStore() };
jest.mock('../../../shared/runtime', () => ({ runtime: async () => mockRuntime }));
jest.mock('../../../shared/backfill/jobRuntime', () => ({ backfillJobStore: () => mockJobs.store, backfillSliceDeps: () => { throw new Error('not in this test'); } }));

// Imported after the mocks.
import { getBackfill, startBackfill } from '../../../functions/backfill';

let keys: TestKeys;
let accessAudit: MemoryAccessAudit;

const context = () => new InvocationContext({ functionName: 'test', invocationId: 'inv-1', logHandler: () => undefined });

async function call(method: 'GET' | 'POST', roles: string[] | undefined, body?: unknown): Promise<HttpResponseInit> {
  const headers: Record<string, string> = roles ? { authorization: `Bearer ${await token(keys, { oid: 'operator-oid', roles })}` } : {};
  const request = new HttpRequest({ method, url: 'http://localhost/api/backfill', headers, ...(body !== undefined ? { body: { string: typeof body === 'string' ? body : JSON.stringify(body) } } : {}) });
  return (method === 'POST' ? startBackfill : getBackfill)(request, context());
}

beforeAll(async () => {
  keys = await makeKeys('backfill-key');
});

beforeEach(() => {
  accessAudit = new MemoryAccessAudit();
  mockJobs.store = new MemoryJobStore();
  Object.assign(mockRuntime, {
    auth: createAuthenticator({ mode: 'entra', issuers: [ISSUER], audiences: [AUDIENCE], jwks: { kind: 'url', url: 'https://unused.invalid' }, clockToleranceSeconds: 0 }, validatorFor(keys)),
    accessAudit,
    settings: loadSettings({ SourceStorage: azuriteConnectionString(), CosmosDb: cosmosEmulatorConnectionString(), DEID_KEY: 'unit-test-key-0123456789abcdef-0123', SOURCE_CONTAINERS: 'landing,archive' }),
    telemetry: { trackFailure: jest.fn() },
  });
});

describe('POST/GET /api/backfill', () => {
  test('given each caller, then only Operations.Manage starts a job, and Operations.Read or Operations.Manage reads it', async () => {
    expect((await call('POST', undefined, {})).status).toBe(401);
    expect((await call('POST', ['Operations.Read'], {})).status).toBe(403);
    expect((await call('POST', ['Research.Read', 'Sharing.Manage'], {})).status).toBe(403);
    expect(mockJobs.store.doc).toBeUndefined();
    expect((await call('GET', ['Operations.Read'])).status).toBe(404);
    expect((await call('GET', ['Research.Read'])).status).toBe(403);

    const started = await call('POST', ['Operations.Manage'], { container: 'archive', prefix: '2024/', rate: 50 });
    expect(started.status).toBe(202);
    expect(started.jsonBody).toMatchObject({ state: 'pending', done: false, source: { kind: 'blob', container: 'archive', prefix: '2024/' }, ratePerSecond: 50, counts: { emitted: 0 } });
    expect(mockJobs.store.doc).toMatchObject({ requestedBy: 'operator-oid' });
    for (const roles of [['Operations.Read'], ['Operations.Manage']]) {
      const res = await call('GET', roles);
      expect(res.status).toBe(200);
      expect(res.jsonBody).toMatchObject({ id: (started.jsonBody as { id: string }).id, state: 'pending' });
      // Counts and states: not the caller, not a lease.
      expect(JSON.stringify(res.jsonBody)).not.toMatch(/operator-oid|lease/);
    }
    expect(accessAudit.records.map((r) => [r.route, r.status])).toEqual(expect.arrayContaining([['startBackfill', 403], ['startBackfill', 202], ['getBackfill', 200]]));
  });

  test('given a job running, then a second POST is a 409 and the first job stays', async () => {
    const first = await call('POST', ['Operations.Manage'], {});
    expect(first.jsonBody).toMatchObject({ source: { kind: 'blob', container: 'landing' }, ratePerSecond: 200 });
    const second = await call('POST', ['Operations.Manage'], { container: 'archive' });
    expect(second.status).toBe(409);
    expect(second.jsonBody).toMatchObject({ error: { code: ErrorCodes.STATE_CONFLICT } });
    expect(mockJobs.store.doc?.id).toBe((first.jsonBody as { id: string }).id);
  });

  test.each([
    ['not JSON', 'nope'],
    ['a container outside SOURCE_CONTAINERS', { container: 'elsewhere' }],
    ['a rate out of range', { rate: 1e9 }],
    ['a fractional rate', { rate: 1.5 }],
    ['an unknown source', { source: 'ftp' }],
    ['an unknown field', { container: 'landing', extra: 1 }],
    ['an ANQ path that is relative', { source: 'anq', path: 'replica/dicom' }],
    ['an ANQ path with dot segments', { source: 'anq', path: '/replica/../etc' }],
    ['an ANQ job with a container', { source: 'anq', path: '/replica/dicom/', container: 'landing' }],
  ])('given %s, then 400 REQUEST_INVALID and no job', async (_what, body) => {
    const res = await call('POST', ['Operations.Manage'], body);
    expect(res.status).toBe(400);
    expect(res.jsonBody).toMatchObject({ error: { code: ErrorCodes.REQUEST_INVALID } });
    expect(mockJobs.store.doc).toBeUndefined();
  });

  test('given an ANQ path and snapshot, then the job names them', async () => {
    const res = await call('POST', ['Operations.Manage'], { source: 'anq', path: '/replica/dicom/', snapshot: 7, rate: 0 });
    expect(res.status).toBe(202);
    expect(res.jsonBody).toMatchObject({ source: { kind: 'anq', path: '/replica/dicom/', snapshotId: 7 }, ratePerSecond: 0 });
  });
});
