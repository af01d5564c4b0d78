import * as http from 'http';
import { createLocalJWKSet } from 'jose';
import { type AddressInfo } from 'net';

import { bearerToken, createBearerValidator, jwksKeys, VERIFIED_TOKEN_MAX_AGE_MS } from '../../../shared/auth/bearer';
import { ErrorCodes, isPipelineError, PipelineError } from '../../../shared/errors';
import { AUDIENCE, ISSUER, makeKeys, type TestKeys, token, validatorFor } from './authFixtures';

async function failure(p: Promise<unknown>): Promise<PipelineError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof PipelineError) return e;
    throw e;
  }
  throw new Error('expected a rejection');
}

let keys: TestKeys;
let other: TestKeys;

beforeAll(async () => {
  keys = await makeKeys('key-1');
  other = await makeKeys('key-2');
});

describe('createBearerValidator', () => {
  test('given a token of the issuer for this audience, then the caller id, kind, app and roles', async () => {
    const validate = validatorFor(keys);
    const p = await validate(await token(keys, { oid: 'oid-7', roles: ['Research.Read'], claims: { azp: 'client-app', scp: 'access_as_user' } }));
    expect(p).toEqual({ callerId: 'oid-7', kind: 'user', appId: 'client-app', roles: ['Research.Read'], via: 'bearer' });
  });

  test('given an app-only token (no scp), then the caller is an app', async () => {
    const p = await validatorFor(keys)(await token(keys, { oid: 'sp-1', roles: ['Operations.Read'], claims: { appid: 'daemon' } }));
    expect(p).toMatchObject({ callerId: 'sp-1', kind: 'app', appId: 'daemon' });
  });

  test('given an expired token, then UNAUTHENTICATED saying it expired', async () => {
    const e = await failure(validatorFor(keys)(await token(keys, { expiresIn: -120 })));
    expect(e.code).toBe(ErrorCodes.UNAUTHENTICATED);
    expect(e.message).toMatch(/expired/);
  });

  test('given a token for another audience, then UNAUTHENTICATED naming the audience', async () => {
    const e = await failure(validatorFor(keys)(await token(keys, { audience: 'api://someone-else' })));
    expect(e.code).toBe(ErrorCodes.UNAUTHENTICATED);
    expect(e.message).toMatch(/audience/);
  });

  test('given a token of another issuer, then UNAUTHENTICATED naming the issuer', async () => {
    const e = await failure(validatorFor(keys)(await token(keys, { issuer: 'https://login.microsoftonline.com/another-tenant/v2.0' })));
    expect(e.code).toBe(ErrorCodes.UNAUTHENTICATED);
    expect(e.message).toMatch(/issuer/);
  });

  test('given a token signed by another key under the published key id, then UNAUTHENTICATED (signature)', async () => {
    const e = await failure(validatorFor(keys)(await token(other, { kid: keys.kid })));
    expect(e.code).toBe(ErrorCodes.UNAUTHENTICATED);
    expect(e.message).toMatch(/signature/);
  });

  test('given a token whose payload was altered after signing, then UNAUTHENTICATED (signature)', async () => {
    const [h, , s] = (await token(keys, { roles: [] })).split('.');
    const forged = Buffer.from(JSON.stringify({ oid: 'x', roles: ['Operations.Read'], iss: ISSUER, aud: AUDIENCE, exp: Math.floor(Date.now() / 1000) + 600 })).toString('base64url');
    const e = await failure(validatorFor(keys)(`${h}.${forged}.${s}`));
    expect(e.code).toBe(ErrorCodes.UNAUTHENTICATED);
    expect(e.message).toMatch(/signature/);
  });

  test('given a token signed with a key the issuer does not publish, then UNAUTHENTICATED', async () => {
    const e = await failure(validatorFor(keys)(await token(other)));
    expect(e.code).toBe(ErrorCodes.UNAUTHENTICATED);
  });

  test('given an unsigned token (alg none), then UNAUTHENTICATED', async () => {
    const header = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
    const payload = Buffer.from(JSON.stringify({ oid: 'x', roles: ['Operations.Read'], iss: ISSUER, aud: AUDIENCE, exp: Math.floor(Date.now() / 1000) + 600 })).toString('base64url');
    const e = await failure(validatorFor(keys)(`${header}.${payload}.x`));
    expect(e.code).toBe(ErrorCodes.UNAUTHENTICATED);
  });

  test('given a token without exp, then UNAUTHENTICATED', async () => {
    const { SignJWT } = await import('jose');
    const t = await new SignJWT({ oid: 'x' }).setProtectedHeader({ alg: 'RS256', kid: keys.kid }).setIssuer(ISSUER).setAudience(AUDIENCE).sign(keys.privateKey);
    expect((await failure(validatorFor(keys)(t))).code).toBe(ErrorCodes.UNAUTHENTICATED);
  });

  test('given a valid token naming no caller (no oid, no sub), then UNAUTHENTICATED', async () => {
    const { SignJWT } = await import('jose');
    const t = await new SignJWT({ roles: ['Research.Read'] }).setProtectedHeader({ alg: 'RS256', kid: keys.kid }).setIssuer(ISSUER).setAudience(AUDIENCE).setExpirationTime('1h').sign(keys.privateKey);
    const e = await failure(validatorFor(keys)(t));
    expect(e.code).toBe(ErrorCodes.UNAUTHENTICATED);
    expect(e.message).toMatch(/names no caller/);
  });

  test('given keys that cannot be fetched, then SERVICE_UNAVAILABLE, not the caller\'s fault', async () => {
    const validate = createBearerValidator({ issuers: [ISSUER], audiences: [AUDIENCE], keys: async () => { throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }); } });
    expect((await failure(validate(await token(keys)))).code).toBe(ErrorCodes.SERVICE_UNAVAILABLE);
  });

  test('given a failure, then its message holds nothing of the token', async () => {
    const t = await token(keys, { oid: 'secret-caller-id', audience: 'api://other' });
    const e = await failure(validatorFor(keys)(t));
    expect(e.message).not.toContain('secret-caller-id');
    expect(e.message).not.toContain(t.split('.')[1] as string);
  });
});

describe('verified tokens remembered', () => {
  const localKeys = () => createLocalJWKSet({ keys: [keys.publicJwk] });
  const counting = () => {
    const resolve = localKeys();
    const calls = { n: 0 };
    const getKey: typeof resolve = async (...args) => {
      calls.n++;
      return resolve(...args);
    };
    return { getKey, calls };
  };

  test('given the same token twice, then its signature is checked once and both calls name the same caller', async () => {
    const { getKey, calls } = counting();
    const validate = createBearerValidator({ issuers: [ISSUER], audiences: [AUDIENCE], keys: getKey, clockToleranceSeconds: 0 });
    const t = await token(keys, { oid: 'oid-9', roles: ['Research.Read'] });
    const first = await validate(t);
    const second = await validate(t);
    expect(second).toEqual(first);
    expect(calls.n).toBe(1);
    // Another token is verified on its own.
    await validate(await token(keys, { oid: 'oid-10' }));
    expect(calls.n).toBe(2);
  });

  test('given a remembered token past its expiry, then it is verified again and refused as expired', async () => {
    let clock = Date.now();
    const { getKey, calls } = counting();
    const validate = createBearerValidator({ issuers: [ISSUER], audiences: [AUDIENCE], keys: getKey, clockToleranceSeconds: 0, now: () => clock });
    const t = await token(keys, { expiresIn: 120 });
    await validate(t);
    clock += 60_000;
    await validate(t);
    expect(calls.n).toBe(1);
    clock += 61_000;
    const e = await failure(validate(t));
    expect(e.message).toMatch(/expired/);
    expect(calls.n).toBe(2);
  });

  test('given a remembered token older than the maximum age, then it is verified again (a withdrawn key stops being honoured)', async () => {
    let clock = Date.now();
    const { getKey, calls } = counting();
    const validate = createBearerValidator({ issuers: [ISSUER], audiences: [AUDIENCE], keys: getKey, clockToleranceSeconds: 0, now: () => clock });
    const t = await token(keys, { expiresIn: 3600 });
    await validate(t);
    clock += VERIFIED_TOKEN_MAX_AGE_MS + 1;
    await validate(t);
    expect(calls.n).toBe(2);
  });

  test('given a token that fails, then it is not remembered: each try is checked and refused', async () => {
    const { getKey, calls } = counting();
    const validate = createBearerValidator({ issuers: [ISSUER], audiences: [AUDIENCE], keys: getKey, clockToleranceSeconds: 0 });
    const forged = await token(other, { kid: keys.kid });
    await failure(validate(forged));
    await failure(validate(forged));
    expect(calls.n).toBe(2);
  });

  test('given the caller changes the principal it got, then the next call still gets the verified one', async () => {
    const validate = validatorFor(keys);
    const t = await token(keys, { oid: 'oid-11', roles: ['Research.Read'] });
    const first = await validate(t);
    (first.roles as string[]).push('Operations.Read');
    expect((await validate(t)).roles).toEqual(['Research.Read']);
  });
});

describe('bearerToken', () => {
  test('given no Authorization header, then UNAUTHENTICATED asking for a bearer token', () => {
    expect(() => bearerToken(null)).toThrow(/bearer token is required/);
  });

  test('given another scheme or a token of the wrong shape, then UNAUTHENTICATED', () => {
    for (const header of ['Basic dXNlcjpwYXNz', 'Bearer', 'Bearer not-a-jwt', `Bearer a.b.${'c'.repeat(17000)}`]) {
      let thrown: unknown;
      try {
        bearerToken(header);
      } catch (e) {
        thrown = e;
      }
      expect(isPipelineError(thrown, ErrorCodes.UNAUTHENTICATED)).toBe(true);
    }
  });

  test('given "bearer" in any case, then the token', () => {
    expect(bearerToken('bearer aa.bb.cc')).toBe('aa.bb.cc');
  });
});

describe('jwksKeys from a URL', () => {
  test('given many validations, then the JWKS is fetched once and reused (no call to the issuer per request)', async () => {
    let fetches = 0;
    const server = http.createServer((_req, res) => {
      fetches += 1;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: [keys.publicJwk] }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/keys`;
      const validate = createBearerValidator({ issuers: [ISSUER], audiences: [AUDIENCE], keys: jwksKeys({ kind: 'url', url }) });
      for (let i = 0; i < 5; i++) await expect(validate(await token(keys, { oid: `c${i}` }))).resolves.toMatchObject({ callerId: `c${i}` });
      // An unknown key id right after a fetch does not make another fetch (cooldown): forged kids cannot hammer the issuer.
      await expect(validate(await token(other))).rejects.toMatchObject({ code: ErrorCodes.UNAUTHENTICATED });
      expect(fetches).toBe(1);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
