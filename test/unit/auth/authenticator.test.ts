import { HttpRequest } from '@azure/functions';

import { createAuthenticator } from '../../../shared/auth/authenticator';
import { easyAuthPrincipal } from '../../../shared/auth/easyAuth';
import { loadAuthSettings } from '../../../shared/config/settings';
import { ErrorCodes } from '../../../shared/errors';
import { AUDIENCE, easyAuthHeader, ISSUER, makeKeys, type TestKeys, token, validatorFor } from './authFixtures';

const request = (headers: Record<string, string>) => new HttpRequest({ method: 'GET', url: 'http://localhost/api/dicomweb/studies', headers });

const OPERATOR_PRINCIPAL = easyAuthHeader([
  { typ: 'http://schemas.microsoft.com/identity/claims/objectidentifier', val: 'oid-easy' },
  { typ: 'roles', val: 'Operations.Read' },
  { typ: 'roles', val: 'Research.Read' },
  { typ: 'scp', val: 'user_impersonation' },
]);

let keys: TestKeys;
beforeAll(async () => {
  keys = await makeKeys('k');
});

const entra = () => createAuthenticator({ mode: 'entra', issuers: [ISSUER], audiences: [AUDIENCE], jwks: { kind: 'url', url: 'https://unused.invalid/keys' }, clockToleranceSeconds: 0 }, validatorFor(keys));

describe('createAuthenticator', () => {
  test('given entra mode and a valid bearer token, then its caller and roles', async () => {
    const p = await entra().authenticate(request({ authorization: `Bearer ${await token(keys, { oid: 'o1', roles: ['Research.Read'] })}` }));
    expect(p).toMatchObject({ callerId: 'o1', roles: ['Research.Read'], via: 'bearer' });
  });

  test('given entra mode, then an Easy Auth principal header is ignored: without a token the request is unauthenticated', async () => {
    await expect(entra().authenticate(request({ 'x-ms-client-principal': OPERATOR_PRINCIPAL }))).rejects.toMatchObject({ code: ErrorCodes.UNAUTHENTICATED });
  });

  test('given entra mode, a forged principal header beside a valid token adds no role', async () => {
    const p = await entra().authenticate(request({ authorization: `Bearer ${await token(keys, { oid: 'o1', roles: [] })}`, 'x-ms-client-principal': OPERATOR_PRINCIPAL }));
    expect(p.roles).toEqual([]);
  });

  test('given easyauth mode, then the principal header is accepted with its roles', async () => {
    const p = await createAuthenticator({ mode: 'easyauth' }).authenticate(request({ 'x-ms-client-principal': OPERATOR_PRINCIPAL }));
    expect(p).toEqual({ callerId: 'oid-easy', kind: 'user', roles: ['Operations.Read', 'Research.Read'], via: 'easyauth' });
  });

  test('given easyauth mode and no principal header, then UNAUTHENTICATED even with a bearer token', async () => {
    const auth = createAuthenticator({ mode: 'easyauth' });
    await expect(auth.authenticate(request({ authorization: `Bearer ${await token(keys, { roles: ['Operations.Read'] })}` }))).rejects.toMatchObject({ code: ErrorCodes.UNAUTHENTICATED });
  });
});

describe('easyAuthPrincipal', () => {
  test('given the role claim type named by role_typ, then those claims are the roles', () => {
    const header = easyAuthHeader(
      [
        { typ: 'http://schemas.microsoft.com/identity/claims/objectidentifier', val: 'oid-2' },
        { typ: 'http://schemas.microsoft.com/ws/2008/06/identity/claims/role', val: 'Research.Read' },
      ],
      'http://schemas.microsoft.com/ws/2008/06/identity/claims/role',
    );
    expect(easyAuthPrincipal(header)).toMatchObject({ callerId: 'oid-2', roles: ['Research.Read'] });
  });

  test('given a delegated scope in the long claim type, then the caller is a user; without one, an app', () => {
    const oid = { typ: 'http://schemas.microsoft.com/identity/claims/objectidentifier', val: 'oid-3' };
    expect(easyAuthPrincipal(easyAuthHeader([oid, { typ: 'http://schemas.microsoft.com/identity/claims/scope', val: 'user_impersonation' }])).kind).toBe('user');
    expect(easyAuthPrincipal(easyAuthHeader([oid])).kind).toBe('app');
  });

  test('given a header that is not base64 JSON with claims, or names no caller, then UNAUTHENTICATED', () => {
    for (const header of ['not base64 json', Buffer.from('{"claims":"x"}').toString('base64'), easyAuthHeader([{ typ: 'roles', val: 'Research.Read' }])]) {
      expect(() => easyAuthPrincipal(header)).toThrow(expect.objectContaining({ code: ErrorCodes.UNAUTHENTICATED }));
    }
  });
});

describe('loadAuthSettings', () => {
  test('given a tenant and an audience, then the tenant\'s v2.0 and v1.0 issuers and its JWKS URL', () => {
    expect(loadAuthSettings({ AUTH_TENANT_ID: 'contoso.onmicrosoft.com', AUTH_AUDIENCE: 'api://vna, 0000-client' })).toEqual({
      mode: 'entra',
      issuers: ['https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0', 'https://sts.windows.net/contoso.onmicrosoft.com/'],
      audiences: ['api://vna', '0000-client'],
      jwks: { kind: 'url', url: 'https://login.microsoftonline.com/contoso.onmicrosoft.com/discovery/v2.0/keys' },
      clockToleranceSeconds: 60,
    });
  });

  test('given nothing, then one error naming the tenant and the audience settings', () => {
    expect(() => loadAuthSettings({})).toThrow(expect.objectContaining({ code: ErrorCodes.CONFIG_INVALID, message: expect.stringMatching(/AUTH_TENANT_ID.*AUTH_AUDIENCE/) }));
  });

  test('given an issuer without a tenant or a JWKS, then an error naming AUTH_JWKS_URI', () => {
    expect(() => loadAuthSettings({ AUTH_ISSUER: 'https://issuer.example/', AUTH_AUDIENCE: 'a' })).toThrow(/AUTH_JWKS_URI is required/);
  });

  test('given a JWKS over http away from loopback, then refused; on loopback, accepted', () => {
    expect(() => loadAuthSettings({ AUTH_ISSUER: 'i', AUTH_AUDIENCE: 'a', AUTH_JWKS_URI: 'http://keys.example/jwks' })).toThrow(/https/);
    expect(loadAuthSettings({ AUTH_ISSUER: 'i', AUTH_AUDIENCE: 'a', AUTH_JWKS_URI: 'http://127.0.0.1:9999/keys' })).toMatchObject({ jwks: { kind: 'url', url: 'http://127.0.0.1:9999/keys' } });
  });

  test('given a JWKS file path, then a file source', () => {
    expect(loadAuthSettings({ AUTH_ISSUER: 'i', AUTH_AUDIENCE: 'a', AUTH_JWKS_URI: 'file:keys/jwks.json' })).toMatchObject({ jwks: { kind: 'file', path: 'keys/jwks.json' } });
  });

  test('given easyauth, then no token settings are needed; given another mode, then an error', () => {
    expect(loadAuthSettings({ AUTH_MODE: 'easyauth' })).toEqual({ mode: 'easyauth' });
    expect(() => loadAuthSettings({ AUTH_MODE: 'none' })).toThrow(/AUTH_MODE/);
  });
});
