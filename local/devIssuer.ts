/**
 * The development token issuer of `npm start` and the integration tests: an RS256 key pair kept
 * in the data folder (generated on its first use there), its public key served as a JWKS over
 * loopback HTTP with an OpenID discovery document, and tokens for each app role, made at every
 * start. The functions validate these tokens with exactly the code and settings shape they use
 * against Entra ID in Azure (AUTH_ISSUER, AUTH_AUDIENCE, AUTH_JWKS_URI); nothing in the API
 * knows this issuer exists.
 *
 * Never a production issuer: the private key sits unencrypted in `.local-data/` (git-ignored).
 */
import { randomUUID } from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import { exportJWK, generateKeyPair, importJWK, type JWK, type KeyLike, SignJWT } from 'jose';
import * as path from 'path';

import { Roles } from '../shared/auth/principal';
import { closeServer, listen } from './net';

export const DEV_AUDIENCE = 'api://vna-research-pipeline-local';
/** Long enough for a working day; tokens are made again at every start. */
export const DEV_TOKEN_LIFETIME_SECONDS = 12 * 60 * 60;
const KEY_FILE = 'dev-issuer-key.json';
export const TOKENS_FILE = 'tokens.json';

/** The tokens `npm start` prints and writes to `.local-data/tokens.json` (CONTRACT.md, Identities). */
export interface DevTokens {
  research: string;
  sharing: string;
  operations: string;
}

/** The callers of the tokens: one per role, with stable ids so that the audit shows who was who. */
export const DEV_CALLERS: Record<keyof DevTokens, { oid: string; role: string }> = {
  research: { oid: 'local-researcher', role: Roles.ResearchRead },
  sharing: { oid: 'local-data-steward', role: Roles.SharingManage },
  operations: { oid: 'local-operator', role: Roles.OperationsRead },
};

export interface DevTokenOptions {
  /** oid and sub of the caller. */
  subject: string;
  roles: string[];
  /** Defaults: the issuer's own issuer, audience and lifetime. Tests change them to make tokens that must fail. */
  issuer?: string;
  audience?: string;
  /** Seconds from now; negative makes an expired token. */
  expiresIn?: number;
  /** Other claims (scp, azp, idtyp...). */
  claims?: Record<string, unknown>;
}

export interface DevIssuer {
  /** `http://127.0.0.1:<port>` */
  url: string;
  issuer: string;
  audience: string;
  jwksUri: string;
  /** The API's settings for this issuer (AUTH_MODE, AUTH_ISSUER, AUTH_AUDIENCE, AUTH_JWKS_URI). */
  env: Record<string, string>;
  tokens: DevTokens;
  /** Where the tokens were written. */
  tokensFile: string;
  /** Signs a token with the issuer's key. */
  sign(options: DevTokenOptions): Promise<string>;
  stop(): Promise<void>;
}

export interface DevIssuerOptions {
  dataDir: string;
  host?: string;
  /** Default 0 (a free port). */
  port?: number;
  tokenLifetimeSeconds?: number;
}

interface StoredKey {
  kid: string;
  privateJwk: JWK;
  publicJwk: JWK;
}

/** The issuer's key pair in dataDir, generated (mode 0600) when the folder has none. */
export async function devIssuerKey(dataDir: string): Promise<StoredKey> {
  const file = path.join(dataDir, KEY_FILE);
  if (fs.existsSync(file)) return JSON.parse(fs.readFileSync(file, 'utf8')) as StoredKey;
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const kid = randomUUID();
  const stored: StoredKey = {
    kid,
    privateJwk: { ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' },
    publicJwk: { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' },
  };
  fs.mkdirSync(dataDir, { recursive: true });
  fs.writeFileSync(file, `${JSON.stringify(stored)}\n`, { mode: 0o600 });
  return stored;
}

/** Signs a token with a stored key (tests in other processes use this with the key file of the stack's data folder). */
export async function signDevToken(key: StoredKey, issuer: string, audience: string, options: DevTokenOptions, lifetimeSeconds = DEV_TOKEN_LIFETIME_SECONDS): Promise<string> {
  const privateKey = (await importJWK(key.privateJwk, 'RS256')) as KeyLike;
  const now = Math.floor(Date.now() / 1000);
  const expiresIn = options.expiresIn ?? lifetimeSeconds;
  return new SignJWT({ ...options.claims, oid: options.subject, roles: options.roles, ver: '2.0' })
    .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: key.kid })
    .setIssuer(options.issuer ?? issuer)
    .setAudience(options.audience ?? audience)
    .setSubject(options.subject)
    .setIssuedAt(Math.min(now, now + expiresIn - 60))
    .setNotBefore(Math.min(now, now + expiresIn - 60))
    .setExpirationTime(now + expiresIn)
    .setJti(randomUUID())
    .sign(privateKey);
}

/** Starts the issuer and writes the role tokens to `<dataDir>/tokens.json` (mode 0600). */
export async function startDevIssuer(options: DevIssuerOptions): Promise<DevIssuer> {
  const host = options.host ?? '127.0.0.1';
  const key = await devIssuerKey(options.dataDir);
  let discovery = '';
  const jwks = JSON.stringify({ keys: [key.publicJwk] });
  const server = http.createServer((req, res) => {
    const pathname = new URL(req.url ?? '/', 'http://localhost').pathname;
    const body = pathname === '/.well-known/openid-configuration' ? discovery : pathname === '/discovery/keys' ? jwks : undefined;
    if (req.method !== 'GET' || body === undefined) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end('{"error":"not found"}');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'public, max-age=3600' });
    res.end(body);
  });
  const port = await listen(server, options.port ?? 0, host, 'development token issuer');
  const url = `http://${host}:${port}`;
  const issuer = `${url}/`;
  const jwksUri = `${url}/discovery/keys`;
  discovery = JSON.stringify({ issuer, jwks_uri: jwksUri, id_token_signing_alg_values_supported: ['RS256'], token_endpoint_auth_methods_supported: [] });

  const lifetime = options.tokenLifetimeSeconds ?? DEV_TOKEN_LIFETIME_SECONDS;
  const sign = (o: DevTokenOptions) => signDevToken(key, issuer, DEV_AUDIENCE, o, lifetime);
  const tokenFor = (who: keyof DevTokens) => sign({ subject: DEV_CALLERS[who].oid, roles: [DEV_CALLERS[who].role], claims: { scp: 'access_as_user', idtyp: 'user' } });
  let tokens: DevTokens;
  try {
    tokens = { research: await tokenFor('research'), sharing: await tokenFor('sharing'), operations: await tokenFor('operations') };
  } catch (err) {
    await closeServer(server);
    throw err;
  }
  const tokensFile = path.join(options.dataDir, TOKENS_FILE);
  fs.writeFileSync(tokensFile, `${JSON.stringify(tokens, null, 2)}\n`, { mode: 0o600 });

  return {
    url,
    issuer,
    audience: DEV_AUDIENCE,
    jwksUri,
    env: { AUTH_MODE: 'entra', AUTH_ISSUER: issuer, AUTH_AUDIENCE: DEV_AUDIENCE, AUTH_JWKS_URI: jwksUri },
    tokens,
    tokensFile,
    sign,
    stop: () => closeServer(server),
  };
}
