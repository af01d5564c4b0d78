import { loadAnqSettings, loadAnqWatcherSettings } from '../../../shared/config/anqSettings';
import { ErrorCodes, isPipelineError } from '../../../shared/errors';

const base = {
  ANQ_S3_ENDPOINT: 'https://10.0.0.4:9000',
  ANQ_CLUSTER: 'anq-west',
  ANQ_S3_BUCKET: 'replica',
  ANQ_S3_ACCESS_KEY_ID: 'AKID',
  ANQ_S3_SECRET_ACCESS_KEY: 'very-secret-value',
  ANQ_EXPORT_PATH: '/replica/',
  ANQ_PREFIX: '/dicom/',
  ANQ_REST_ENDPOINT: 'https://10.0.0.4:8000',
  ANQ_REST_TOKEN: 'access-token-value',
};

function problemsOf(env: Record<string, string>): string {
  try {
    loadAnqSettings(env);
  } catch (e) {
    if (isPipelineError(e, ErrorCodes.CONFIG_INVALID)) return e.message;
    throw e;
  }
  throw new Error('expected CONFIG_INVALID');
}

describe('loadAnqSettings', () => {
  test('given no ANQ_S3_ENDPOINT, then the ANQ source is off', () => {
    expect(loadAnqSettings({})).toBeUndefined();
  });

  test('given valid settings, then paths are normalised and snapshot reads are the default', () => {
    const s = loadAnqSettings(base);
    expect(s).toEqual({
      cluster: 'anq-west',
      s3: { endpoint: 'https://10.0.0.4:9000', bucket: 'replica', region: 'us-east-1', accessKeyId: 'AKID', secretAccessKey: 'very-secret-value' },
      exportPath: '/replica',
      prefix: 'dicom/',
      readFrom: 'snapshot',
      rest: { endpoint: 'https://10.0.0.4:8000', token: 'access-token-value' },
    });
  });

  test('given several bad settings, then one message names each and echoes no secret', () => {
    const message = problemsOf({ ...base, ANQ_S3_ENDPOINT: 'http://archive.example.org:9000', ANQ_S3_BUCKET: 'A_B', ANQ_EXPORT_PATH: 'relative/../x', ANQ_READ_FROM: 'live', ANQ_S3_ACCESS_KEY_ID: '' });
    for (const name of ['ANQ_S3_ENDPOINT must use https', 'ANQ_S3_BUCKET', 'ANQ_EXPORT_PATH', 'ANQ_READ_FROM', 'ANQ_S3_ACCESS_KEY_ID is required']) expect(message).toContain(name);
    expect(message).not.toContain('very-secret-value');
    expect(message).not.toContain('access-token-value');
  });

  test('given snapshot reads without the REST endpoint, then it is refused; head reads do without', () => {
    const { ANQ_REST_ENDPOINT: _e, ANQ_REST_TOKEN: _t, ...noRest } = base;
    expect(problemsOf(noRest)).toContain('ANQ_REST_ENDPOINT is required');
    expect(loadAnqSettings({ ...noRest, ANQ_READ_FROM: 'head' })?.rest).toBeUndefined();
  });

  test('given an http endpoint on loopback (the local stand-in), then it is accepted', () => {
    expect(loadAnqSettings({ ...base, ANQ_S3_ENDPOINT: 'http://127.0.0.1:4568', ANQ_REST_ENDPOINT: 'http://localhost:8000' })?.s3.endpoint).toBe('http://127.0.0.1:4568');
  });
});

describe('loadAnqWatcherSettings', () => {
  test('given the topic and a storage connection, then defaults fill the rest', () => {
    const s = loadAnqWatcherSettings({ ANQ_EVENTS_TOPIC_ENDPOINT: 'https://t.westeurope-1.eventgrid.azure.net/api/events', AzureWebJobsStorage: 'UseDevelopmentStorage=true' });
    expect(s).toEqual({
      topic: { endpoint: 'https://t.westeurope-1.eventgrid.azure.net/api/events', key: undefined, clientId: undefined },
      schedule: '0 */1 * * * *',
      checkpoint: { storage: { kind: 'connectionString', connectionString: 'UseDevelopmentStorage=true' }, container: 'anq-watcher', blobName: 'checkpoint.json' },
      startFrom: 'oldest',
      backfill: true,
      maxRunMs: 240_000,
      mode: 'snapshots',
      notify: { settleMs: 5_000, reconcileMs: 900_000, stateBlobName: 'listing-state.json' },
    });
  });

  test('given the local host\'s Event Grid webhook as the topic, then its query is kept', () => {
    const endpoint = 'http://127.0.0.1:7071/runtime/webhooks/eventgrid?functionName=ingestReplicatedFile';
    expect(loadAnqWatcherSettings({ ANQ_EVENTS_TOPIC_ENDPOINT: endpoint, AzureWebJobsStorage: 'UseDevelopmentStorage=true' }).topic.endpoint).toBe(endpoint);
  });

  test('given notify mode with live reads, then its settings are read; with snapshot reads, the conflict is named', () => {
    const env = { ANQ_EVENTS_TOPIC_ENDPOINT: 'https://t.westeurope-1.eventgrid.azure.net/api/events', AzureWebJobsStorage: 'UseDevelopmentStorage=true', ANQ_WATCH_MODE: 'notify' };
    expect(loadAnqWatcherSettings({ ...env, ANQ_READ_FROM: 'head', ANQ_NOTIFY_SETTLE_MS: '2000', ANQ_NOTIFY_RECONCILE_MS: '60000', ANQ_NOTIFY_STATE_BLOB: 'state.json' })).toMatchObject({
      mode: 'notify',
      notify: { settleMs: 2_000, reconcileMs: 60_000, stateBlobName: 'state.json' },
    });
    expect(() => loadAnqWatcherSettings(env)).toThrow(/ANQ_WATCH_MODE=notify needs ANQ_READ_FROM=head/);
    expect(() => loadAnqWatcherSettings({ ...env, ANQ_WATCH_MODE: 'stream', ANQ_NOTIFY_SETTLE_MS: 'soon' })).toThrow(/ANQ_WATCH_MODE must be "snapshots" or "notify".*ANQ_NOTIFY_SETTLE_MS/s);
  });

  test('given no topic, no storage and a bad schedule, then each is named', () => {
    expect(() => loadAnqWatcherSettings({ ANQ_WATCH_SCHEDULE: '*/5 * * * *' })).toThrow(/ANQ_EVENTS_TOPIC_ENDPOINT is required.*ANQ_WATCH_SCHEDULE.*ANQ_CHECKPOINT_STORAGE/);
  });
});
