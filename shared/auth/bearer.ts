/**
 * Bearer tokens validated in the process with `jose`: signature against the issuer's keys,
 * issuer, audience, expiry and not-before. The keys come from a JWKS URL fetched once and cached
 * (fetched again only when a token names a key id the cache does not hold, at most once per
 * cooldown), or from a JWKS file: a request never waits on a call to Entra ID once the keys are in.
 *
 * Nothing of a token reaches a log or an error message: failures say which check failed.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

import { createLocalJWKSet, createRemoteJWKSet, errors, type JSONWebKeySet, jwtVerify, type JWTVerifyGetKey } from 'jose';

import type { JwksSource } from '../config/settings';
import { ErrorCodes, PipelineError } from '../errors';
import { Lru } from '../lru';
import { type Principal, principalFromClaims } from './principal';

export interface BearerValidatorOptions {
  /** Accepted `iss` values (Entra: the tenant's v2.0 and v1.0 issuers). */
  issuers: string[];
  /** Accepted `aud` values (the API's application ID URI and/or client id). */
  audiences: string[];
  /** Resolves the verification key of a token from its header (a jose JWKS function). */
  keys: JWTVerifyGetKey;
  clockToleranceSeconds?: number;
  /** Tokens remembered once verified (0: verify every request). Default VERIFIED_TOKEN_CACHE_ENTRIES. */
  cacheEntries?: number;
  /** The clock (ms since the epoch), for tests; the expiry checks of jose use it too. */
  now?: () => number;
}

/** Verified tokens remembered: a viewer sends the same token with every frame it asks for. */
export const VERIFIED_TOKEN_CACHE_ENTRIES = 1000;
/**
 * A remembered token is verified again after this long even before it expires, so that a key
 * the issuer stops publishing (a rollover, a revoked key) stops being honoured within minutes.
 */
export const VERIFIED_TOKEN_MAX_AGE_MS = 5 * 60 * 1000;

/** Entra ID signs access tokens with RS256; anything else (`none`, HMAC with a public key) is refused. */
const ALGORITHMS = ['RS256'];

/** A JWT is three base64url parts; Entra tokens are a few KB. Longer headers are not tokens. */
const TOKEN_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const MAX_TOKEN_LENGTH = 16 * 1024;

/** How long fetched keys are used before they are fetched again (Entra rolls keys over weeks, announced in advance). */
const JWKS_CACHE_MAX_AGE_MS = 24 * 60 * 60 * 1000;
/** At most one fetch per this interval for a key id not in the cache (a forged kid cannot make us hammer Entra). */
const JWKS_COOLDOWN_MS = 5 * 60 * 1000;

/** The key resolver for a JWKS source. A JWKS file is read once, here; throws CONFIG_INVALID when it is not a JWKS. */
export function jwksKeys(source: JwksSource): JWTVerifyGetKey {
  if (source.kind === 'url') {
    return createRemoteJWKSet(new URL(source.url), { cacheMaxAge: JWKS_CACHE_MAX_AGE_MS, cooldownDuration: JWKS_COOLDOWN_MS, timeoutDuration: 5000 });
  }
  let jwks: JSONWebKeySet;
  try {
    jwks = JSON.parse(readFileSync(source.path, 'utf8')) as JSONWebKeySet;
    return createLocalJWKSet(jwks);
  } catch (e) {
    throw new PipelineError(ErrorCodes.CONFIG_INVALID, `AUTH_JWKS_URI: the file is not a readable JSON Web Key Set (${(e as Error).name})`, { cause: e });
  }
}

/** The token of an `Authorization: Bearer <token>` header; throws UNAUTHENTICATED when there is none. */
export function bearerToken(authorization: string | null): string {
  if (!authorization) throw new PipelineError(ErrorCodes.UNAUTHENTICATED, 'a bearer token is required (Authorization: Bearer <token>)');
  const m = /^Bearer[ ]+(\S+)\s*$/i.exec(authorization);
  if (!m) throw new PipelineError(ErrorCodes.UNAUTHENTICATED, 'the Authorization header must be "Bearer <token>"');
  const token = m[1] as string;
  if (token.length > MAX_TOKEN_LENGTH || !TOKEN_SHAPE.test(token)) throw new PipelineError(ErrorCodes.UNAUTHENTICATED, 'the bearer token is malformed');
  return token;
}

/** Translates a jose failure: the token's fault is UNAUTHENTICATED, the key source's fault SERVICE_UNAVAILABLE. */
function classify(e: unknown): PipelineError {
  if (e instanceof errors.JWTExpired) return new PipelineError(ErrorCodes.UNAUTHENTICATED, 'the bearer token has expired', { cause: e });
  if (e instanceof errors.JWTClaimValidationFailed) {
    const what: Record<string, string> = {
      aud: 'the bearer token is not for this API (audience)',
      iss: 'the bearer token is from another issuer',
      nbf: 'the bearer token is not valid yet',
      exp: 'the bearer token has no expiry',
    };
    return new PipelineError(ErrorCodes.UNAUTHENTICATED, what[e.claim] ?? `the bearer token failed the "${e.claim}" check`, { cause: e });
  }
  if (e instanceof errors.JWSSignatureVerificationFailed) return new PipelineError(ErrorCodes.UNAUTHENTICATED, 'the bearer token\'s signature does not verify', { cause: e });
  if (e instanceof errors.JWKSNoMatchingKey || e instanceof errors.JWKSMultipleMatchingKeys) {
    return new PipelineError(ErrorCodes.UNAUTHENTICATED, 'the bearer token is signed with a key the issuer does not publish', { cause: e });
  }
  if (e instanceof errors.JOSEAlgNotAllowed) return new PipelineError(ErrorCodes.UNAUTHENTICATED, 'the bearer token is signed with an algorithm this API does not accept', { cause: e });
  if (e instanceof errors.JWTInvalid || e instanceof errors.JWSInvalid || e instanceof errors.JOSENotSupported || e instanceof errors.JWKInvalid) {
    return new PipelineError(ErrorCodes.UNAUTHENTICATED, 'the bearer token is malformed', { cause: e });
  }
  // The keys could not be fetched (network, timeout, a non-200 answer, a broken JWKS): not the caller's fault.
  return new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'the token issuer\'s signing keys are unavailable', { cause: e });
}

export type BearerValidator = (token: string) => Promise<Principal>;

/**
 * A validator for one API. The returned function throws PipelineError UNAUTHENTICATED for a
 * token that does not validate or names no caller, SERVICE_UNAVAILABLE when the keys cannot be
 * fetched. A token that verified is remembered (by its hash) until it expires, at most
 * VERIFIED_TOKEN_MAX_AGE_MS: its next requests skip the signature check. Safe to share.
 */
export function createBearerValidator(options: BearerValidatorOptions): BearerValidator {
  const now = options.now ?? Date.now;
  const verifyOptions = {
    issuer: options.issuers,
    audience: options.audiences,
    algorithms: ALGORITHMS,
    clockTolerance: options.clockToleranceSeconds ?? 60,
    requiredClaims: ['exp'],
  };
  const maxEntries = options.cacheEntries ?? VERIFIED_TOKEN_CACHE_ENTRIES;
  // By the token's SHA-256, never the token: only a token that verified gets in, and only until
  // its `exp` (without the clock tolerance) or VERIFIED_TOKEN_MAX_AGE_MS, whichever comes first.
  const verified = maxEntries > 0 ? new Lru<{ principal: Principal; until: number }>(maxEntries) : undefined;
  return async (token) => {
    const key = verified ? createHash('sha256').update(token).digest('base64url') : '';
    const hit = verified?.get(key);
    if (hit && now() < hit.until) return { ...hit.principal, roles: [...hit.principal.roles] };
    if (hit) verified?.delete(key);
    let payload;
    try {
      ({ payload } = await jwtVerify(token, options.keys, { ...verifyOptions, currentDate: new Date(now()) }));
    } catch (e) {
      throw classify(e);
    }
    const principal = principalFromClaims(payload as Record<string, unknown>, 'bearer');
    if (!principal) throw new PipelineError(ErrorCodes.UNAUTHENTICATED, 'the bearer token names no caller (oid or sub)');
    if (verified && typeof payload.exp === 'number') {
      verified.set(key, { principal: { ...principal, roles: [...principal.roles] }, until: Math.min(payload.exp * 1000, now() + VERIFIED_TOKEN_MAX_AGE_MS) });
    }
    return principal;
  };
}
