/** Keys, tokens and an in-memory access audit for the auth and function tests. */
import { createLocalJWKSet, exportJWK, generateKeyPair, type JWK, type KeyLike, SignJWT } from 'jose';

import type { AccessAuditStore, AccessQuery, AccessRecord } from '../../../shared/audit/accessAudit';
import { createBearerValidator } from '../../../shared/auth/bearer';

export const ISSUER = 'https://login.microsoftonline.com/11111111-2222-3333-4444-555555555555/v2.0';
export const AUDIENCE = 'api://vna-test';

export interface TestKeys {
  privateKey: KeyLike;
  publicJwk: JWK;
  kid: string;
}

export async function makeKeys(kid: string): Promise<TestKeys> {
  const { privateKey, publicKey } = await generateKeyPair('RS256');
  return { privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' }, kid };
}

export interface TokenOptions {
  oid?: string;
  roles?: string[];
  issuer?: string;
  audience?: string;
  /** Seconds from now. */
  expiresIn?: number;
  claims?: Record<string, unknown>;
  /** Sign with these keys but name `kid` in the header (a forged signature under a published key id). */
  kid?: string;
}

export async function token(keys: TestKeys, o: TokenOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const expiresIn = o.expiresIn ?? 3600;
  return new SignJWT({ oid: o.oid ?? 'caller-1', roles: o.roles ?? [], ...o.claims })
    .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: o.kid ?? keys.kid })
    .setIssuer(o.issuer ?? ISSUER)
    .setAudience(o.audience ?? AUDIENCE)
    .setSubject(o.oid ?? 'caller-1')
    .setIssuedAt(now - 3600 * 2)
    .setExpirationTime(now + expiresIn)
    .sign(keys.privateKey);
}

/** A validator that trusts `keys` only, as the API trusts its tenant's JWKS. */
export function validatorFor(keys: TestKeys) {
  return createBearerValidator({ issuers: [ISSUER], audiences: [AUDIENCE], keys: createLocalJWKSet({ keys: [keys.publicJwk] }), clockToleranceSeconds: 0 });
}

export function easyAuthHeader(claims: { typ: string; val: string }[], roleType = 'roles'): string {
  return Buffer.from(JSON.stringify({ auth_typ: 'aad', name_typ: 'name', role_typ: roleType, claims })).toString('base64');
}

/** Keeps appended records in order; `failWith` makes appends fail as an unreachable store would. */
export class MemoryAccessAudit implements AccessAuditStore {
  readonly records: AccessRecord[] = [];
  failWith?: Error;

  async append(record: AccessRecord): Promise<void> {
    if (this.failWith) throw this.failWith;
    if (this.records.some((r) => r.id === record.id)) throw new Error(`access record ${record.id} exists`);
    this.records.push(structuredClone(record));
  }

  async query(q: AccessQuery): Promise<AccessRecord[]> {
    return this.records
      .filter((r) => (q.callerId === undefined || r.callerId === q.callerId) && r.time >= q.from && r.time < q.to)
      .filter((r) => q.studyInstanceUid === undefined || r.returned.studies.includes(q.studyInstanceUid))
      .sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0))
      .slice(0, q.limit);
  }
}
