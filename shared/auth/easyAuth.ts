/**
 * App Service authentication ("Easy Auth") in front of the Function App: it validates the
 * caller's token and passes the principal on as `x-ms-client-principal`, base64 of
 * `{ auth_typ, name_typ, role_typ, claims: [{ typ, val }] }`. App Service removes that header
 * from what clients send, so it is trustworthy only when Easy Auth is on: read only under
 * AUTH_MODE=easyauth, where a missing header means an unauthenticated request.
 */
import { ErrorCodes, PipelineError } from '../errors';
import { type Principal, principalFromClaims } from './principal';

export const EASY_AUTH_PRINCIPAL_HEADER = 'x-ms-client-principal';

/** Claim types Easy Auth uses for the same things as the JWT claim names. */
const CLAIM_ALIASES: Record<string, string> = {
  'http://schemas.microsoft.com/identity/claims/objectidentifier': 'oid',
  'http://schemas.microsoft.com/ws/2008/06/identity/claims/role': 'roles',
  'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier': 'sub',
  'http://schemas.microsoft.com/identity/claims/scope': 'scp',
};

/** Larger than any principal Easy Auth sends; a bigger header is refused unread. */
const MAX_HEADER_LENGTH = 32 * 1024;

interface EasyAuthPrincipal {
  role_typ?: unknown;
  claims?: unknown;
}

/** The principal in an `x-ms-client-principal` header; throws UNAUTHENTICATED when absent or unreadable. */
export function easyAuthPrincipal(header: string | null): Principal {
  if (!header) throw new PipelineError(ErrorCodes.UNAUTHENTICATED, 'the request was not authenticated (no App Service principal)');
  if (header.length > MAX_HEADER_LENGTH) throw new PipelineError(ErrorCodes.UNAUTHENTICATED, 'the App Service principal is unreadable');
  let parsed: EasyAuthPrincipal;
  try {
    parsed = JSON.parse(Buffer.from(header, 'base64').toString('utf8')) as EasyAuthPrincipal;
  } catch {
    throw new PipelineError(ErrorCodes.UNAUTHENTICATED, 'the App Service principal is unreadable');
  }
  if (!parsed || typeof parsed !== 'object' || !Array.isArray(parsed.claims)) {
    throw new PipelineError(ErrorCodes.UNAUTHENTICATED, 'the App Service principal is unreadable');
  }
  const roleType = typeof parsed.role_typ === 'string' ? parsed.role_typ : undefined;
  const claims: Record<string, unknown> = {};
  const roles: string[] = [];
  for (const claim of parsed.claims as unknown[]) {
    const { typ, val } = (claim ?? {}) as { typ?: unknown; val?: unknown };
    if (typeof typ !== 'string' || typeof val !== 'string') continue;
    const name = typ === roleType ? 'roles' : (CLAIM_ALIASES[typ] ?? typ);
    // One claim entry per role; the first value of any other claim wins.
    if (name === 'roles') roles.push(val);
    else if (!(name in claims)) claims[name] = val;
  }
  claims.roles = roles;
  const principal = principalFromClaims(claims, 'easyauth');
  if (!principal) throw new PipelineError(ErrorCodes.UNAUTHENTICATED, 'the App Service principal names no caller');
  return principal;
}
