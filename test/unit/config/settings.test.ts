import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { azuriteConnectionString, cosmosEmulatorConnectionString } from '../../../local/emulators';
import { loadSettings } from '../../../shared/config/settings';
import { ErrorCodes, httpErrorBody, httpStatusFor, isTransient, PipelineError } from '../../../shared/errors';

const valid = {
  SourceStorage: azuriteConnectionString(),
  CosmosDb: cosmosEmulatorConnectionString(),
  DEID_KEY: 'a-development-key-of-at-least-32-bytes!!',
};

describe('loadSettings', () => {
  it('given the local defaults, then every container and database name has its default', () => {
    const s = loadSettings(valid);
    expect(s.sourceContainers).toEqual(['anq-replica']);
    expect(s.researchContainer).toBe('research');
    expect(s.quarantineContainer).toBe('quarantine');
    expect(s.cosmosDatabase).toBe('vna');
    expect(s.sourceStorage).toMatchObject({ kind: 'connectionString', blobEndpoint: 'http://127.0.0.1:10000/devstoreaccount1' });
    expect(s.researchStorage).toBe(s.sourceStorage);
    expect(s.burnedInPolicy).toBe('redact');
    expect(s.ocrWorkers).toBe(1);
    expect(s.ocrSampleFrames).toBe(5);
    expect(s.ocrQueueMax).toBe(16);
    expect(s.ocrWaitMaxMs).toBe(240_000);
  });

  it('given OCR queue settings, then they are taken within bounds, and the longest OCR wait allowed stays within host.json\'s functionTimeout', () => {
    expect(loadSettings({ ...valid, OCR_QUEUE_MAX: '0', OCR_WAIT_MAX_MS: '480000' })).toMatchObject({ ocrQueueMax: 0, ocrWaitMaxMs: 480_000 });
    expect(() => loadSettings({ ...valid, OCR_WAIT_MAX_MS: '480001' })).toThrow(/OCR_WAIT_MAX_MS/);
    // An OCR wait never ends the invocation by the host's timeout: at most 8 of its 10 minutes.
    const host = JSON.parse(readFileSync(join(__dirname, '..', '..', '..', 'host.json'), 'utf8')) as { functionTimeout: string };
    const [h, m, sec] = host.functionTimeout.split(':').map(Number);
    expect(480_000).toBeLessThanOrEqual(((h ?? 0) * 3600 + (m ?? 0) * 60 + (sec ?? 0)) * 1000 * 0.8);
  });

  it('given identity-based connections, then no secret is needed for storage and Cosmos DB', () => {
    const s = loadSettings({
      SourceStorage__blobServiceUri: 'https://acct.blob.core.windows.net',
      CosmosDb__accountEndpoint: 'https://acct.documents.azure.com:443/',
      DEID_KEY: valid.DEID_KEY,
    });
    expect(s.sourceStorage).toEqual({ kind: 'identity', blobServiceUri: 'https://acct.blob.core.windows.net', clientId: undefined });
    expect(s.cosmos.kind).toBe('identity');
  });

  it('given several bad settings, then one error names every one of them and echoes no secret', () => {
    let error: unknown;
    try {
      loadSettings({ DEID_KEY: 'short-secret', RESEARCH_CONTAINER: 'Bad_Name', MAX_CONCURRENT_INGESTIONS: '0', SUMMARY_SETTLE_MS: '-1', SUMMARY_REFRESH_INTERVAL_MS: 'soon', BURNED_IN_POLICY: 'maybe', OCR_WORKERS: '0', OCR_SAMPLE_FRAMES: 'many', OCR_QUEUE_MAX: '-1', OCR_WAIT_MAX_MS: 'forever' });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(PipelineError);
    const message = (error as Error).message;
    for (const name of ['SourceStorage', 'CosmosDb', 'DEID_KEY', 'RESEARCH_CONTAINER', 'MAX_CONCURRENT_INGESTIONS', 'SUMMARY_SETTLE_MS', 'SUMMARY_REFRESH_INTERVAL_MS', 'BURNED_IN_POLICY', 'OCR_WORKERS', 'OCR_SAMPLE_FRAMES', 'OCR_QUEUE_MAX', 'OCR_WAIT_MAX_MS']) expect(message).toContain(name);
    expect(message).not.toContain('short-secret');
    expect((error as PipelineError).code).toBe(ErrorCodes.CONFIG_INVALID);
  });

  it('given no summary settle time, then 50 ms; a given one is taken', () => {
    expect(loadSettings(valid).summarySettleMs).toBe(50);
    expect(loadSettings({ ...valid, SUMMARY_SETTLE_MS: '0' }).summarySettleMs).toBe(0);
  });

  it('given no COSMOS_REQUESTS_IN_FLIGHT, then 1 (point requests batched behind one out); 0 sends every request alone; a value outside 0-64 is refused', () => {
    expect(loadSettings(valid).cosmosRequestsInFlight).toBe(1);
    expect(loadSettings({ ...valid, COSMOS_REQUESTS_IN_FLIGHT: '0' }).cosmosRequestsInFlight).toBe(0);
    expect(loadSettings({ ...valid, COSMOS_REQUESTS_IN_FLIGHT: '4' }).cosmosRequestsInFlight).toBe(4);
    for (const bad of ['-1', '65', 'many']) expect(() => loadSettings({ ...valid, COSMOS_REQUESTS_IN_FLIGHT: bad })).toThrow(/COSMOS_REQUESTS_IN_FLIGHT/);
  });

  it('given no summary refresh interval, then 250 ms; a given one is taken', () => {
    expect(loadSettings(valid).summaryRefreshIntervalMs).toBe(250);
    expect(loadSettings({ ...valid, SUMMARY_REFRESH_INTERVAL_MS: '0' }).summaryRefreshIntervalMs).toBe(0);
  });

  it('given a base64 key, then it is decoded', () => {
    const key = Buffer.alloc(32, 9);
    expect(loadSettings({ ...valid, DEID_KEY: `base64:${key.toString('base64')}` }).deidKey.equals(key)).toBe(true);
  });
});

describe('error mapping', () => {
  it.each([
    [ErrorCodes.QUERY_INVALID, 400],
    [ErrorCodes.NOT_FOUND, 404],
    [ErrorCodes.CATALOG_CONFLICT, 409],
    [ErrorCodes.DICOM_ELEMENT_TOO_LARGE, 413],
    [ErrorCodes.SERVICE_UNAVAILABLE, 503],
    [ErrorCodes.SERVICE_THROTTLED, 503],
    [ErrorCodes.INTERNAL, 500],
  ])('maps %s to HTTP %i', (code, status) => {
    expect(httpStatusFor(new PipelineError(code, 'x'))).toBe(status);
  });

  it('given a foreign error, then a 500 that says nothing internal', () => {
    const e = new Error('connection to 10.1.2.3 failed for patient Doe');
    expect(httpStatusFor(e)).toBe(500);
    expect(JSON.stringify(httpErrorBody(e))).not.toContain('Doe');
  });

  it('treats service faults as transient and file faults as final', () => {
    expect(isTransient(new PipelineError(ErrorCodes.SERVICE_THROTTLED, 'x'))).toBe(true);
    expect(isTransient(new PipelineError(ErrorCodes.SOURCE_CHANGED, 'x'))).toBe(true);
    expect(isTransient(new PipelineError(ErrorCodes.DICOM_TRUNCATED, 'x'))).toBe(false);
    expect(isTransient(new Error('x'))).toBe(false);
  });
});
