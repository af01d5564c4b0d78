/**
 * Bearer tokens this process sends to an Azure service (Blob Storage, Cosmos DB), for one
 * credential (a managed identity in Azure): cached until shortly before they expire, one renewal
 * at a time, and a token not yet expired is used again when its renewal fails.
 */
import type { AccessToken, TokenCredential } from '@azure/core-auth';

/** A token is renewed this long before it expires. */
const TOKEN_REFRESH_MARGIN_MS = 2 * 60_000;

export class TokenCache {
  private token?: AccessToken;
  private pending?: Promise<AccessToken>;

  /**
   * `scopes` are asked for in turn: the next one only when the credential refuses the one
   * before (Cosmos DB's account scope, then its service-wide scope, as the SDK asks).
   */
  constructor(
    private readonly credential: TokenCredential,
    private readonly scopes: readonly string[],
    private readonly what: string,
  ) {}

  /** The token. Rejects with the credential's error when no token can be had. */
  async get(abortSignal?: AbortSignal): Promise<string> {
    const now = Date.now();
    if (this.token && this.token.expiresOnTimestamp - now > TOKEN_REFRESH_MARGIN_MS && (this.token.refreshAfterTimestamp ?? Infinity) > now) return this.token.token;
    this.pending ??= this.fetch(abortSignal)
      .then((t) => (this.token = t))
      .finally(() => (this.pending = undefined));
    try {
      return (await this.pending).token;
    } catch (e) {
      if (this.token && this.token.expiresOnTimestamp > Date.now()) return this.token.token;
      throw e;
    }
  }

  private async fetch(abortSignal: AbortSignal | undefined): Promise<AccessToken> {
    let failure: unknown;
    for (const scope of this.scopes) {
      try {
        const t = await this.credential.getToken(scope, abortSignal ? { abortSignal } : {});
        if (!t) throw new Error(`the ${this.what} credential gave no token`);
        return t;
      } catch (e) {
        failure ??= e;
      }
    }
    throw failure;
  }
}
