/**
 * Identities through the local host, with real tokens of the development issuer that the stack
 * started (the API trusts it exactly as it trusts Entra ID in Azure: AUTH_ISSUER, AUTH_AUDIENCE,
 * AUTH_JWKS_URI), and the access audit in the Cosmos DB emulator server.
 */
import { BlobServiceClient } from '@azure/storage-blob';
import { randomUUID } from 'crypto';
import * as fs from 'fs';
import { exportJWK, generateKeyPair } from 'jose';
import * as path from 'path';

import { DEV_CALLERS, devIssuerKey, signDevToken } from '../../local/devIssuer';
import { accessRecord } from '../../shared/audit/accessAudit';
import { CosmosAccessAudit } from '../../shared/audit/cosmosAccessAudit';
import { catalogContainer, createCosmosClient, createDocumentClient } from '../../shared/catalog/cosmosCatalog';
import { loadSettings } from '../../shared/config/settings';
import { apiGet, authHeader, hostLog, testStack, waitForEvents } from './stackEnv';

const FIXTURE = path.resolve(__dirname, '..', 'fixtures', 'dicom', 'pydicom-deb', 'test_files__MR_small.dcm');

beforeAll(async () => {
  // One cataloged study, so that a QIDO answer has research UIDs for the audit to record.
  const stack = testStack();
  const landing = BlobServiceClient.fromConnectionString(stack.env.SourceStorage as string).getContainerClient((stack.env.SOURCE_CONTAINERS ?? 'anq-replica').split(',')[0] as string);
  await landing.getBlockBlobClient(`auth-test/${randomUUID()}.dcm`).uploadData(fs.readFileSync(FIXTURE));
  await waitForEvents();
});

const get = (route: string, headers: Record<string, string> = {}) => fetch(`${testStack().hostUrl}${route}`, { headers });

async function devToken(options: Parameters<typeof signDevToken>[3]): Promise<string> {
  const stack = testStack();
  return signDevToken(await devIssuerKey(stack.dataDir), stack.env.AUTH_ISSUER as string, stack.env.AUTH_AUDIENCE as string, options);
}

describe('the development issuer', () => {
  test('given the stack, then tokens.json holds a token per role and the JWKS publishes the public key only', async () => {
    const stack = testStack();
    const written = JSON.parse(fs.readFileSync(path.join(stack.dataDir, 'tokens.json'), 'utf8')) as Record<string, string>;
    expect(Object.keys(written).sort()).toEqual(['operations', 'research', 'sharing']);
    expect(written).toEqual(stack.tokens);
    const jwks = (await (await fetch(stack.env.AUTH_JWKS_URI as string)).json()) as { keys: Record<string, unknown>[] };
    expect(jwks.keys).toHaveLength(1);
    expect(jwks.keys[0]).toMatchObject({ kty: 'RSA', alg: 'RS256' });
    for (const privatePart of ['d', 'p', 'q', 'dp', 'dq', 'qi']) expect(jwks.keys[0]).not.toHaveProperty(privatePart);
  });
});

describe('role checks through the local host', () => {
  test('given no token, then every protected route answers 401 with a Bearer challenge, and /api/health answers 200', async () => {
    for (const route of ['/api/dicomweb/studies', '/api/dicomweb/series', '/api/dicomweb/instances', '/api/ingestions', '/api/audit']) {
      const res = await get(route);
      expect({ route, status: res.status, challenge: res.headers.get('www-authenticate') }).toEqual({ route, status: 401, challenge: expect.stringMatching(/^Bearer /) });
      expect(await res.json()).toMatchObject({ error: { code: 'UNAUTHENTICATED' } });
    }
    expect((await get('/api/health')).status).toBe(200);
  });

  test('given each role\'s token, then research routes need Research.Read and the operations routes Operations.Read', async () => {
    const statuses: Record<string, Record<string, number>> = {};
    for (const route of ['/api/dicomweb/studies', '/api/ingestions', '/api/audit']) {
      statuses[route] = {};
      for (const who of ['research', 'sharing', 'operations'] as const) statuses[route][who] = (await apiGet(route, who)).status;
    }
    expect(statuses).toEqual({
      '/api/dicomweb/studies': { research: 200, sharing: 403, operations: 403 },
      // 400: the operations view needs ?source=; the caller got past the role check.
      '/api/ingestions': { research: 403, sharing: 403, operations: 400 },
      '/api/audit': { research: 403, sharing: 403, operations: 200 },
    });
  });

  test('given an expired token, a token for another audience or issuer, or one signed by another key, then 401 invalid_token', async () => {
    const roles = ['Research.Read', 'Operations.Read'];
    const { privateKey } = await generateKeyPair('RS256', { extractable: true });
    const stranger = { ...(await devIssuerKey(testStack().dataDir)), privateJwk: { ...(await exportJWK(privateKey)), alg: 'RS256' } };
    const tokens = {
      expired: await devToken({ subject: 'x', roles, expiresIn: -300 }),
      audience: await devToken({ subject: 'x', roles, audience: 'api://another-api' }),
      issuer: await devToken({ subject: 'x', roles, issuer: 'https://login.microsoftonline.com/another-tenant/v2.0' }),
      signature: await signDevToken(stranger, testStack().env.AUTH_ISSUER as string, testStack().env.AUTH_AUDIENCE as string, { subject: 'x', roles }),
    };
    for (const [what, t] of Object.entries(tokens)) {
      const res = await get('/api/dicomweb/studies', { authorization: `Bearer ${t}` });
      expect({ what, status: res.status, challenge: res.headers.get('www-authenticate') }).toEqual({ what, status: 401, challenge: expect.stringContaining('error="invalid_token"') });
    }
  });

  test('given an Easy Auth principal header while AUTH_MODE is entra, then it is not trusted (401)', async () => {
    const principal = Buffer.from(JSON.stringify({ claims: [{ typ: 'oid', val: 'forger' }, { typ: 'roles', val: 'Operations.Read' }] })).toString('base64');
    expect((await get('/api/audit', { 'x-ms-client-principal': principal })).status).toBe(401);
  });
});

describe('the access audit', () => {
  test('given a researcher\'s QIDO call, then an operator finds it in the audit with the research UIDs returned; the researcher cannot read the audit', async () => {
    const caller = `it-researcher-${Date.now()}`;
    const token = await devToken({ subject: caller, roles: ['Research.Read'], claims: { scp: 'access_as_user' } });
    const qido = await get('/api/dicomweb/studies?limit=5', { authorization: `Bearer ${token}` });
    expect(qido.status).toBe(200);
    const answered = ((await qido.json()) as Record<string, { Value?: string[] }>[]).map((s) => s['0020000D']?.Value?.[0]);
    expect(answered.length).toBeGreaterThan(0);

    expect((await get(`/api/audit?caller=${caller}`, { authorization: `Bearer ${token}` })).status).toBe(403);

    const res = await get(`/api/audit?caller=${caller}`, authHeader('operations'));
    expect(res.status).toBe(200);
    const body = (await res.json()) as { records: { callerId: string; route: string; status: number; role: string; returned: { studies: string[] }; queryKeys?: string[] }[] };
    const query = body.records.find((r) => r.route === 'qidoStudies');
    expect(query).toMatchObject({ callerId: caller, status: 200, role: 'Research.Read', queryKeys: ['limit'] });
    expect([...(query?.returned.studies ?? [])].sort()).toEqual([...answered].sort());
    expect(body.records.find((r) => r.route === 'audit')).toMatchObject({ callerId: caller, status: 403 });
  });

  test('given the operator\'s own reads, then they are in the audit under the operator\'s id', async () => {
    await apiGet('/api/audit?limit=1', 'operations');
    const res = await apiGet(`/api/audit?caller=${DEV_CALLERS.operations.oid}`, 'operations');
    const body = (await res.json()) as { records: { route: string }[] };
    expect(body.records.some((r) => r.route === 'audit')).toBe(true);
  });
});

describe('the access audit store', () => {
  test('given a record id that exists, then a second write with it fails and the first record stays as written (append-only)', async () => {
    const settings = loadSettings(testStack().env);
    const client = createCosmosClient(settings.cosmos);
    try {
      const store = new CosmosAccessAudit(catalogContainer(client.database(settings.cosmosDatabase).container(settings.auditContainer), createDocumentClient(settings.cosmos)));
      const principal = { callerId: `append-only-${Date.now()}`, kind: 'app' as const, roles: [], via: 'bearer' as const };
      const first = accessRecord({ id: `rec-${Date.now()}`, time: new Date(), principal, route: 'qidoStudies', method: 'GET', role: 'Research.Read', status: 200, invocationId: 'a' });
      await store.append(first);
      await expect(store.append({ ...first, status: 500 })).rejects.toMatchObject({ code: 'CATALOG_CONFLICT' });
      const now = new Date();
      const read = await store.query({ callerId: principal.callerId, from: new Date(now.getTime() - 60_000).toISOString(), to: new Date(now.getTime() + 60_000).toISOString(), limit: 10 });
      expect(read).toEqual([expect.objectContaining({ id: first.id, status: 200 })]);
    } finally {
      client.dispose();
    }
  });
});

describe('logs', () => {
  test('given the requests above, then no token and no part of one is in the host log', () => {
    const log = hostLog();
    expect(log).toContain('401');
    expect(log).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}/);
    for (const t of Object.values(testStack().tokens)) for (const part of t.split('.')) expect(log).not.toContain(part);
  });
});
