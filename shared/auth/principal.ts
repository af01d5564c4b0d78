/**
 * Who is calling, as far as the API cares: a stable caller id for the access audit and the app
 * roles that the routes check. Nothing else of the token (names, e-mail, UPN) is kept.
 */

/** The app roles of the API's registration in Entra ID (the `roles` claim). */
export const Roles = {
  /** DICOMweb (QIDO-RS, WADO-RS), catalog statistics, the viewer's API calls. */
  ResearchRead: 'Research.Read',
  /** Data-sharing agreements and exports. */
  SharingManage: 'Sharing.Manage',
  /** The operations view of ingestions, error statistics, the access audit. */
  OperationsRead: 'Operations.Read',
  /** Operator actions that change what the pipeline does: starting a backfill job (functions/backfill.ts). */
  OperationsManage: 'Operations.Manage',
} as const;

export type Role = (typeof Roles)[keyof typeof Roles];

export interface Principal {
  /** `oid` (the object id of the user or service principal), else `sub`. Pseudonymous, never a name. */
  callerId: string;
  /** `app` for a service calling with its own identity (client credentials), `user` for a person. */
  kind: 'user' | 'app';
  /** The client application (`azp`, or `appid` in v1.0 tokens), when the token names it. */
  appId?: string;
  roles: readonly string[];
  /** How the caller was established. */
  via: 'bearer' | 'easyauth';
}

/** Claims longer than this are not ids: a token stuffed with them is refused rather than recorded. */
const MAX_ID_LENGTH = 128;

function idClaim(value: unknown): string | undefined {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_ID_LENGTH ? value : undefined;
}

/**
 * The principal of a validated set of claims (a verified JWT payload, or Easy Auth's claims
 * folded into one object). undefined when the claims name no caller.
 */
export function principalFromClaims(claims: Record<string, unknown>, via: Principal['via']): Principal | undefined {
  const callerId = idClaim(claims.oid) ?? idClaim(claims.sub);
  if (!callerId) return undefined;
  const rawRoles = claims.roles;
  const roles = Array.isArray(rawRoles) ? rawRoles.filter((r): r is string => typeof r === 'string') : typeof rawRoles === 'string' ? [rawRoles] : [];
  // Entra marks app-only tokens with idtyp=app when asked to; without it, a token carrying no
  // delegated scopes (scp) was issued to an application, not on behalf of a user.
  const kind = claims.idtyp === 'app' || (claims.idtyp === undefined && claims.scp === undefined) ? 'app' : 'user';
  const appId = idClaim(claims.azp) ?? idClaim(claims.appid);
  return { callerId, kind, ...(appId ? { appId } : {}), roles, via };
}

export function hasRole(principal: Principal, role: Role): boolean {
  return principal.roles.includes(role);
}
