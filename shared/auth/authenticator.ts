/** The caller of an HTTP request, by the configured mode (bearer tokens, or Easy Auth's principal header). */
import type { AuthSettings } from '../config/settings';
import { bearerToken, type BearerValidator, createBearerValidator, jwksKeys } from './bearer';
import { EASY_AUTH_PRINCIPAL_HEADER, easyAuthPrincipal } from './easyAuth';
import type { Principal } from './principal';

/** What an authenticator reads of a request: its headers (the Functions HttpRequest has them). */
export interface RequestHeaders {
  headers: { get(name: string): string | null };
}

export interface Authenticator {
  readonly mode: AuthSettings['mode'];
  /**
   * The caller of the request. Throws PipelineError UNAUTHENTICATED (no or an invalid token,
   * no principal) or SERVICE_UNAVAILABLE (the issuer's keys cannot be fetched).
   */
  authenticate(request: RequestHeaders): Promise<Principal>;
}

/** In `entra` mode, `validator` replaces the one built from the settings (tests). */
export function createAuthenticator(settings: AuthSettings, validator?: BearerValidator): Authenticator {
  if (settings.mode === 'easyauth') {
    return { mode: 'easyauth', authenticate: async (request) => easyAuthPrincipal(request.headers.get(EASY_AUTH_PRINCIPAL_HEADER)) };
  }
  const validate = validator ?? createBearerValidator({
    issuers: settings.issuers,
    audiences: settings.audiences,
    keys: jwksKeys(settings.jwks),
    clockToleranceSeconds: settings.clockToleranceSeconds,
  });
  return { mode: 'entra', authenticate: async (request) => validate(bearerToken(request.headers.get('authorization'))) };
}
