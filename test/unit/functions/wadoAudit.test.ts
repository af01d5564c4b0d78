/**
 * The access audit of WADO-RS through the gate, called as the host calls the function: the
 * record is written alongside the first read of the copy (not after it), an audit that cannot
 * be written still withholds the answer, and an answer that came out otherwise than recorded
 * in advance gets a record of its own that names the first.
 */
import { HttpRequest, type HttpResponseInit, InvocationContext } from '@azure/functions';

import { createAuthenticator } from '../../../shared/auth/authenticator';
import type { ResearchCatalogReader, SqlQuery } from '../../../shared/catalog/researchCatalog';
import { DEFAULT_LIMITS } from '../../../shared/dicom/limits';
import { ErrorCodes, PipelineError } from '../../../shared/errors';
import { CatalogFrameIndexSource } from '../../../shared/retrieve/frameIndexSource';
import { MetadataCache } from '../../../shared/retrieve/instanceMetadata';
import type { ResearchInstance } from '../../../shared/retrieve/researchInstances';
import type { WadoDeps } from '../../../shared/retrieve/wado';
import type { CopyRead, CopyReadOptions } from '../../../shared/storage/stores';
import { AUDIENCE, ISSUER, makeKeys, MemoryAccessAudit, type TestKeys, token, validatorFor } from '../auth/authFixtures';
import { MemoryResearchStore } from '../fakes';

const STUDY = '2.25.8';
const SERIES = '2.25.8.1';
const INSTANCE = '2.25.8.1.1';
const BLOB = `${STUDY}/${SERIES}/${INSTANCE}.dcm`;

const mockRuntime: Record<string, unknown> = {};
jest.mock('../../../shared/runtime', () => ({ runtime: async () => mockRuntime }));

// Imported after the mock: the function file takes the runtime from it.
import { wadoHandlers } from '../../../functions/wado';

const doc: ResearchInstance = {
  studyInstanceUid: STUDY,
  seriesInstanceUid: SERIES,
  sopInstanceUid: INSTANCE,
  sopClassUid: '1.2.840.10008.5.1.4.1.1.7',
  transferSyntaxUid: '1.2.840.10008.1.2.1',
  size: 108,
  researchBlob: BLOB,
  updatedAt: 't1',
  frames: { kind: 'native', count: 2, offset: 100, frameLength: 4 },
};

class OneInstanceCatalog implements ResearchCatalogReader {
  async *query<T>(spec: SqlQuery): AsyncIterable<T> {
    if (spec.parameters.find((p) => p.name === '@instance')?.value === INSTANCE) yield { ...doc } as unknown as T;
  }
}

/** Resolves when `flag` is set, or rejects after `ms`: a read and an audit write that wait for each other must overlap. */
function waitFor(flag: () => boolean, what: string, ms = 2000): Promise<void> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const poll = () => (flag() ? resolve() : Date.now() - started > ms ? reject(new Error(`${what} never started: the two ran one after the other`)) : setTimeout(poll, 5));
    poll();
  });
}

let keys: TestKeys;
let research: MemoryResearchStore;
let audit: MemoryAccessAudit;
let readStarted: boolean;
let auditStarted: boolean;

beforeAll(async () => {
  keys = await makeKeys('wado-audit-key');
});

beforeEach(async () => {
  research = new MemoryResearchStore();
  research.blobs.set(BLOB, { data: Buffer.concat([Buffer.alloc(100, 0x20), Buffer.alloc(4, 1), Buffer.alloc(4, 2)]), version: { etag: '"1"', rank: 'r' } });
  audit = new MemoryAccessAudit();
  readStarted = false;
  auditStarted = false;
  const retrieve: WadoDeps = {
    catalog: new OneInstanceCatalog(),
    research,
    frameIndex: new CatalogFrameIndexSource({ research, catalog: { getInstance: async () => undefined, putInstance: async () => undefined } }),
    headerLimits: DEFAULT_LIMITS,
    metadataCache: new MetadataCache(),
  };
  Object.assign(mockRuntime, {
    auth: createAuthenticator({ mode: 'entra', issuers: [ISSUER], audiences: [AUDIENCE], jwks: { kind: 'url', url: 'https://unused.invalid' }, clockToleranceSeconds: 0 }, validatorFor(keys)),
    accessAudit: audit,
    retrieve,
    telemetry: { trackFailure: jest.fn() },
  });
});

async function frameRequest(): Promise<HttpResponseInit> {
  const url = `http://localhost/api/dicomweb/studies/${STUDY}/series/${SERIES}/instances/${INSTANCE}/frames/2`;
  const headers = { authorization: `Bearer ${await token(keys, { oid: 'researcher-1', roles: ['Research.Read'] })}` };
  const request = new HttpRequest({ method: 'GET', url, headers, params: { study: STUDY, series: SERIES, instance: INSTANCE, frames: '2' } });
  const context = new InvocationContext({ functionName: 'wadoFrames', invocationId: 'inv-7', logHandler: () => undefined });
  return (await (wadoHandlers.wadoFrames as NonNullable<(typeof wadoHandlers)[string]>)(request, context)) as HttpResponseInit;
}

async function bodyOf(res: HttpResponseInit): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of res.body as AsyncIterable<Uint8Array>) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

describe('the access audit of a WADO-RS frame request', () => {
  test('given a frame request, then the audit write and the read of the frame overlap, and one record holds the instance', async () => {
    const readRange = research.readRange.bind(research);
    research.readRange = async (name: string, offset: number, count: number | undefined, options?: CopyReadOptions): Promise<CopyRead> => {
      readStarted = true;
      await waitFor(() => auditStarted, 'the audit write');
      return readRange(name, offset, count, options);
    };
    const append = audit.append.bind(audit);
    audit.append = async (record) => {
      auditStarted = true;
      await waitFor(() => readStarted, 'the read of the frame');
      return append(record);
    };
    const res = await frameRequest();
    expect(res.status).toBe(200);
    expect((await bodyOf(res)).includes(Buffer.alloc(4, 2))).toBe(true);
    expect(audit.records).toHaveLength(1);
    expect(audit.records[0]).toMatchObject({ route: 'wadoFrames', status: 200, callerId: 'researcher-1', returned: { studies: [STUDY], series: [SERIES], instances: [INSTANCE] }, invocationId: 'inv-7' });
    expect(audit.records[0]?.supersedes).toBeUndefined();
  });

  test('given the audit cannot be written, then 503 with Retry-After, no frame, and a telemetry failure to alert on', async () => {
    audit.failWith = new PipelineError(ErrorCodes.SERVICE_UNAVAILABLE, 'writing the access audit: service error (503)');
    const res = await frameRequest();
    expect(res.status).toBe(503);
    expect(res.headers).toMatchObject({ 'retry-after': '5' });
    expect(res.body).toBeUndefined();
    expect(JSON.stringify(res.jsonBody)).not.toContain(INSTANCE);
    expect((mockRuntime.telemetry as { trackFailure: jest.Mock }).trackFailure.mock.calls).toEqual([['ACCESS_AUDIT_UNAVAILABLE', 'wadoFrames']]);
  });

  test('given the copy unreadable after the access was recorded in advance, then the 404 answered is recorded too, naming the first record', async () => {
    research.blobs.delete(BLOB);
    const res = await frameRequest();
    expect(res.status).toBe(404);
    expect(audit.records.map((r) => r.status)).toEqual([200, 404]);
    const [early, final] = audit.records;
    expect(final?.supersedes).toBe(early?.id);
    expect(final?.returned).toEqual({ studies: [], series: [], instances: [] });
  });
});
