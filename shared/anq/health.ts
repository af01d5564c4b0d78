/**
 * Readiness of the ANQ source for `/api/health`: the cluster's S3 endpoint and REST API answer,
 * and accept the credentials the settings hold. The answer is one word per endpoint, never an
 * endpoint, a key or a token: the health route is anonymous.
 */
import { HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';

import { AnqSettings, loadAnqSettings } from '../config/anqSettings';
import { anqS3Client } from '../storage/anqSourceStore';
import { QumuloRestClient } from './qumuloRest';

/** `credentials refused`: the endpoint answered 401 or 403 (a wrong or revoked key, a user without the right). */
export type AnqCheck = 'ok' | 'unavailable' | 'credentials refused';

/** How long one probe may take: a health check that hangs is no answer. */
const PROBE_TIMEOUT_MS = 5_000;

/** The HTTP status behind an error, looked for along its `cause` chain (the S3 and REST adapters keep it there). */
function statusBehind(e: unknown): number | undefined {
  for (let x = e, depth = 0; x && depth < 5; x = (x as { cause?: unknown }).cause, depth++) {
    const o = x as { statusCode?: unknown; $metadata?: { httpStatusCode?: unknown } };
    const status = typeof o.statusCode === 'number' ? o.statusCode : o.$metadata?.httpStatusCode;
    if (typeof status === 'number') return status;
  }
  return undefined;
}

async function probe(f: () => Promise<unknown>, answered: (status: number) => boolean = () => false): Promise<AnqCheck> {
  try {
    await f();
    return 'ok';
  } catch (e) {
    const status = statusBehind(e);
    if (status === 401 || status === 403) return 'credentials refused';
    return status !== undefined && answered(status) ? 'ok' : 'unavailable';
  }
}

export interface AnqProbes {
  s3: S3Client;
  rest?: QumuloRestClient;
}

/**
 * Checks the ANQ endpoints: `anqS3` (a HEAD of a key under the prefix, signed with the S3 key:
 * found or not found both mean reachable and accepted) and, when configured, `anqRest` (the
 * snapshot listing, with the REST token). Never throws.
 */
export async function checkAnq(anq: AnqSettings, probes: AnqProbes): Promise<Record<string, AnqCheck>> {
  const s3 = probe(
    () => probes.s3.send(new HeadObjectCommand({ Bucket: anq.s3.bucket, Key: `${anq.prefix}.health-probe` }), { abortSignal: AbortSignal.timeout(PROBE_TIMEOUT_MS) }),
    (status) => status === 404,
  );
  const rest = probes.rest ? probe(() => probes.rest!.listSnapshots({ abortSignal: AbortSignal.timeout(PROBE_TIMEOUT_MS) })) : undefined;
  return { anqS3: await s3, ...(rest ? { anqRest: await rest } : {}) };
}

export function anqProbes(anq: AnqSettings): AnqProbes {
  return { s3: anqS3Client(anq.s3), ...(anq.rest ? { rest: new QumuloRestClient(anq.rest.endpoint, anq.rest.token) } : {}) };
}

let cached: { anq: AnqSettings; probes: AnqProbes } | null | undefined;

/**
 * The ANQ checks of this process's settings; none when the ANQ source is off. Throws
 * CONFIG_INVALID on bad ANQ settings (the runtime has failed on them already).
 */
export async function anqHealth(): Promise<Record<string, AnqCheck>> {
  if (cached === undefined) {
    const anq = loadAnqSettings();
    cached = anq ? { anq, probes: anqProbes(anq) } : null;
  }
  return cached ? checkAnq(cached.anq, cached.probes) : {};
}
